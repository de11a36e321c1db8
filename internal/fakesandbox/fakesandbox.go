// Package fakesandbox stands in for nsjail and the Python harness in tests,
// so that package jail's worker lifecycle and package pool's use of it run on
// any machine: no root, no nsjail, no Python, no cgroups.
//
// The test binary itself plays every part. New links it into a directory
// as "python" and "nsjail"; a jail.Config pointing at those (with cgroups
// off) goes through the real NewSpawner and Spawn. Started as "python" with
// -c, it answers the interpreter probe; as "nsjail", it starts the command
// after "--" with the --env variables, waits for it and exits as nsjail does
// (128+N when it died of signal N); as "python" with a harness path, it
// speaks the harness's side of the line protocol (jail/protocol.go,
// pyharness/harness.py) as a strict worker. (Fork isolation's zygote and
// its children are tested with the real jail only.) A test package's
// TestMain calls Main first.
//
// What a worker does is told by the script, one command a line:
//
//	print TEXT       stdout gets TEXT and a newline
//	eprint TEXT      stderr gets TEXT and a newline
//	result JSON      the result (default null)
//	error TYPE MSG   answer with an error instead
//	echo             the result is the request as the harness received it
//	pid / ppid       the result is this process's pid / its parent's
//	id X             answer with message id X instead of the request's
//	raw TEXT         write TEXT as a protocol line
//	big N            write a protocol line of N bytes
//	touch PATH       create the file PATH (a sign that the script runs)
//	write PATH TEXT  write TEXT to the file PATH (a cgroup's counters, say)
//	sleep DURATION   sleep
//	exit N           exit with status N, unanswered
//	signal N         die of signal N, unanswered
//	close            close the protocol's output and stay alive, unanswered
//	answer           send the answer now, not after the last command
//	noreply          send no answer
//	linger           stay alive after answering, until killed
//
// and how it starts by the file named "startup" in the directory, if any:
// "exit" (fails with "broken harness" on stderr), "garbage" (a first line
// that is not JSON), "protocol2" (another protocol version) or "silent"
// (never ready).
package fakesandbox

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Program names the test binary is linked under.
const (
	pythonName = "python"
	nsjailName = "nsjail"
)

func init() {
	// jail finds the harness among the children of
	// the process's main thread (/proc/PID/task/PID/children): the fake
	// parts start their children from the main goroutine, kept on that
	// thread.
	if role() != "" {
		runtime.LockOSThread()
	}
}

// role is the part this process plays, or "" for an ordinary test run.
func role() string {
	switch filepath.Base(os.Args[0]) {
	case nsjailName:
		return nsjailName
	case pythonName:
		return pythonName
	}
	return ""
}

// Main plays the fake sandbox's part and exits if the process was started
// as one; otherwise it returns at once. Call it first in TestMain.
func Main() {
	switch role() {
	case nsjailName:
		exit(nsjail(os.Args[1:]))
	case pythonName:
		exit(python(os.Args[1:]))
	}
}

// exit ends the process at once: os.Exit would first run the race
// detector's report, which waits a second in every process.
func exit(code int) {
	syscall.Exit(code)
}

// Sandbox is a directory holding the fake's programs.
type Sandbox struct {
	Dir    string
	Python string
	Nsjail string
}

// New makes a sandbox directory, removed when t ends. It is not under
// t.TempDir, whose parent is private: the jail's user must be able to
// reach the interpreter.
func New(t testing.TB) *Sandbox {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("fake sandbox: %v", err)
	}
	dir, err := os.MkdirTemp("", "fakesandbox-")
	if err != nil {
		t.Fatalf("fake sandbox: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("fake sandbox: %v", err)
	}
	s := &Sandbox{Dir: dir, Python: filepath.Join(dir, pythonName), Nsjail: filepath.Join(dir, nsjailName)}
	for _, dst := range []string{s.Python, s.Nsjail} {
		if err := linkOrCopy(exe, dst); err != nil {
			t.Fatalf("fake sandbox: %v", err)
		}
	}
	return s
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err != nil {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	return os.Chmod(dst, 0o755)
}

// Startup sets how workers spawned from now on start (see the package
// comment); "" is normally.
func (s *Sandbox) Startup(t testing.TB, mode string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Dir, "startup"), []byte(mode), 0o644); err != nil {
		t.Fatalf("fake sandbox: %v", err)
	}
}

// Pids lists the processes that played role so far ("harness", "zygote"
// or "child"), in the order they started.
func (s *Sandbox) Pids(role string) []int {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "pids"))
	var out []int
	for _, line := range strings.Split(string(data), "\n") {
		r, p, ok := strings.Cut(line, " ")
		if pid, err := strconv.Atoi(p); ok && r == role && err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// record appends this process's role and pid to the sandbox's list.
func record(role string) {
	f, err := os.OpenFile(filepath.Join(filepath.Dir(os.Args[0]), "pids"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = fmt.Fprintf(f, "%s %d\n", role, os.Getpid())
}

func startup() string {
	data, _ := os.ReadFile(filepath.Join(filepath.Dir(os.Args[0]), "startup"))
	return strings.TrimSpace(string(data))
}

// nsjail runs the command after "--" with the --env variables and exits as
// nsjail does.
func nsjail(args []string) int {
	var env, command []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			command = args[i+1:]
			break
		}
		if args[i] == "--env" && i+1 < len(args) {
			env = append(env, args[i+1])
			i++
		}
	}
	if len(command) == 0 {
		fmt.Fprintln(os.Stderr, "fake nsjail: no command")
		return 255
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "fake nsjail:", err)
		return 255
	}
	// The protocol's descriptors are the harness's alone: one that closes
	// its output ends the channel.
	_ = os.Stdin.Close()
	_ = os.Stdout.Close()
	return exitAs(cmd.Wait(), cmd)
}

// exitAs is the status nsjail exits with after its child ended.
func exitAs(err error, cmd *exec.Cmd) int {
	st := cmd.ProcessState
	if st == nil {
		fmt.Fprintln(os.Stderr, "fake nsjail:", err)
		return 255
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// python answers the probe, or plays the harness.
func python(args []string) int {
	for i, a := range args {
		if a == "-c" && i+1 < len(args) {
			return probe()
		}
	}
	record("harness")
	if !announce(map[string]any{}) {
		return 3
	}
	return serveOne(bufio.NewReader(os.Stdin))
}

// probe prints what jail's interpreter probe asks for: an interpreter
// without an import path or a virtualenv.
func probe() int {
	exe, _ := filepath.Abs(os.Args[0])
	dir := filepath.Dir(exe)
	facts := map[string]any{
		"prefix": dir, "base_prefix": dir, "exec_prefix": dir, "base_exec_prefix": dir,
		"executable": exe, "nsjail": "", "path": []string{},
	}
	if err := json.NewEncoder(os.Stdout).Encode(facts); err != nil {
		return 1
	}
	return 0
}

// announce writes the first ready line (with extra fields), or misbehaves
// as the startup file says. It reports whether to go on.
func announce(extra map[string]any) bool {
	ready := map[string]any{"ready": true, "protocol": 1, "pid": os.Getpid(), "python": "fake"}
	for k, v := range extra {
		ready[k] = v
	}
	switch startup() {
	case "exit":
		fmt.Fprintln(os.Stderr, "broken harness")
		return false
	case "garbage":
		writeLine([]byte("this is not a ready line"))
		block()
	case "protocol2":
		ready["protocol"] = 2
	case "silent":
		block()
	}
	writeMsg(ready)
	return true
}

// request is the part of a request the fake reads.
type request struct {
	ID     string `json:"id"`
	Script string `json:"script"`
}

// serveOne reads one request and does what its script says.
func serveOne(in *bufio.Reader) int {
	line, err := in.ReadBytes('\n')
	if err != nil {
		return 0 // the end of input: nothing to answer
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		fmt.Fprintln(os.Stderr, "fake harness: bad request:", err)
		return 2
	}
	var stdout, stderr strings.Builder
	reply := map[string]any{"id": req.ID}
	result := json.RawMessage("null")
	answer, linger := true, false
	send := func() {
		if _, ok := reply["error"]; !ok {
			reply["result"] = result
		}
		reply["stdout"], reply["stderr"] = stdout.String(), stderr.String()
		writeMsg(reply)
		answer = false
	}
	for _, cmd := range strings.Split(req.Script, "\n") {
		verb, arg, _ := strings.Cut(cmd, " ")
		switch verb {
		case "print":
			stdout.WriteString(arg + "\n")
		case "eprint":
			stderr.WriteString(arg + "\n")
		case "result":
			result = json.RawMessage(arg)
		case "error":
			typ, msg, _ := strings.Cut(arg, " ")
			reply["error"] = map[string]any{"type": typ, "message": msg}
		case "echo":
			result = json.RawMessage(strings.TrimSpace(string(line)))
		case "pid":
			result = json.RawMessage(strconv.Itoa(os.Getpid()))
		case "ppid":
			result = json.RawMessage(strconv.Itoa(os.Getppid()))
		case "id":
			reply["id"] = arg
		case "raw":
			writeLine([]byte(arg))
		case "big":
			n, _ := strconv.Atoi(arg)
			writeLine([]byte(strings.Repeat("x", n)))
		case "touch":
			if f, err := os.Create(arg); err == nil {
				f.Close()
			}
		case "write":
			path, text, _ := strings.Cut(arg, " ")
			_ = os.WriteFile(path, []byte(text+"\n"), 0o644)
		case "sleep":
			d, _ := time.ParseDuration(arg)
			time.Sleep(d)
		case "exit":
			n, _ := strconv.Atoi(arg)
			return n
		case "signal":
			n, _ := strconv.Atoi(arg)
			die(syscall.Signal(n))
		case "close":
			_ = os.Stdout.Close()
			block()
		case "answer":
			send()
		case "noreply":
			answer = false
		case "linger":
			linger = true
		}
	}
	if answer {
		send()
	}
	if linger {
		block()
	}
	return 0
}

// die ends the process by signal sig. The Go runtime catches or ignores
// most signals, so for those the process becomes a shell (same pid) that
// sends the signal to itself with the default action in place.
func die(sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(os.Getpid(), sig)
		block()
	}
	err := syscall.Exec("/bin/sh", []string{"sh", "-c", fmt.Sprintf("kill -%d $$", int(sig))}, nil)
	fmt.Fprintln(os.Stderr, "fake harness: exec sh:", err)
	exit(125)
}

// block waits until the process is killed (or a minute has passed, so a
// leftover cannot live on).
func block() {
	time.Sleep(time.Minute)
	exit(124)
}

func writeMsg(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	writeLine(data)
}

func writeLine(data []byte) {
	_, _ = os.Stdout.Write(append(data, '\n'))
}
