package jail

import (
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// placeScript puts the shell into each cgroup.procs file given before "--",
// then execs the rest: nsjail and all it starts are confined from the start.
const placeScript = `for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"`

// command is nsjail with args, started inside cg (when there are cgroups).
func (s *Spawner) command(cg *workerCgroup, args []string) *exec.Cmd {
	var cmd *exec.Cmd
	if procs := cg.procsFiles(); len(procs) > 0 {
		a := append([]string{"-c", placeScript, "sh"}, procs...)
		a = append(a, "--", s.nsjail)
		cmd = exec.Command("/bin/sh", append(a, args...)...)
	} else {
		cmd = exec.Command(s.nsjail, args...)
	}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	// Own process group, so a kill reaches everything nsjail itself forks;
	// and if the service dies, its jails die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// pidfd refers to one process through a pidfd: a signal or a wait through
// it reaches that process, never one that later took its pid. A wait goes
// through the Go runtime's poller (a pidfd is readable once its process
// has exited), so no thread sits blocked in poll(2) while a child is torn
// down; a thread blocked in a system call kept the runtime's monitor
// thread waking every 20-40 µs.
type pidfd struct {
	// waitMu makes waits one at a time: each sets the file's read deadline.
	waitMu sync.Mutex
	f      *os.File
}

// openPidfd opens a pidfd on pid, or returns nil (pid unknown, or gone).
func openPidfd(pid int) *pidfd {
	if pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == unix.EINVAL { // before Linux 5.10: a blocking pidfd, waited on with poll(2)
		fd, err = unix.PidfdOpen(pid, 0)
	}
	if err != nil {
		return nil
	}
	return &pidfd{f: os.NewFile(uintptr(fd), "pidfd")}
}

// alive reports whether the process has not exited within wait. Without a
// pidfd it is taken as gone.
func (p *pidfd) alive(wait time.Duration) bool {
	if p == nil {
		return false
	}
	rc, err := p.f.SyscallConn()
	if err != nil {
		return false
	}
	exited := false
	check := func(fd uintptr) bool {
		exited = pollExited(int(fd), 0)
		return exited
	}
	if wait <= 0 {
		err = rc.Control(func(fd uintptr) { check(fd) })
		return err == nil && !exited
	}
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	if p.f.SetReadDeadline(time.Now().Add(wait)) != nil { // not in the poller
		err = rc.Control(func(fd uintptr) { exited = pollExited(int(fd), wait) })
		return err == nil && !exited
	}
	err = rc.Read(check)
	return !exited && errors.Is(err, os.ErrDeadlineExceeded)
}

// pollExited reports whether the pidfd fd says its process has exited,
// waiting at most wait for it.
func pollExited(fd int, wait time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(wait.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0
	}
}

// signal sends sig to the process; an error means it is gone, or the
// pidfd is closed.
func (p *pidfd) signal(sig unix.Signal) error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	cerr := rc.Control(func(fd uintptr) { err = unix.PidfdSendSignal(int(fd), sig, nil, 0) })
	if cerr != nil {
		return cerr
	}
	return err
}

func (p *pidfd) close() { p.f.Close() }

// setPolicy moves pid to a scheduling class (nice 0 in it). A failure only
// costs speed, never isolation, so it is ignored.
func setPolicy(pid int, policy uint32) {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}
	_ = unix.SchedSetAttr(pid, &attr, 0)
}

// childOf returns the first child of pid, read from /proc, or 0.
func childOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	return firstPID(data)
}

// firstPID parses the first pid of a /proc children list.
func firstPID(data []byte) int {
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0
	}
	child, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return child
}

func exitText(st *os.ProcessState) string {
	if st == nil {
		return "unknown status"
	}
	return st.String()
}

// newMessageID draws a fresh random id for one protocol message.
func newMessageID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// formatSeconds renders a duration as seconds without trailing zeros.
func formatSeconds(d time.Duration) string {
	s := fmt.Sprintf("%.3f", d.Seconds())
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}

// tailBuffer keeps the last max bytes written to it. Safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

type lineResult struct {
	line []byte
	err  error
}

// readLines delivers the protocol lines read from r until the first error
// (delivered too), then closes lines; it gives up when stop is closed.
func readLines(r io.Reader, lines chan<- lineResult, stop <-chan struct{}, max int) {
	defer close(lines)
	lr := newLineReader(r, max)
	for {
		line, err := lr.next()
		select {
		case lines <- lineResult{line: line, err: err}:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// jailProcess is one nsjail process the service started (a strict worker's
// or the zygote's): its command, the stderr it keeps the end of, and done,
// closed once the one goroutine waiting for it has returned.
type jailProcess struct {
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{}
}

func newJailProcess(cmd *exec.Cmd) jailProcess {
	return jailProcess{cmd: cmd, stderr: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
}

// started waits for the process in the background, once it has started.
func (j *jailProcess) started() {
	go func() {
		_ = j.cmd.Wait()
		close(j.done)
	}()
}

// alive reports whether the process has not been waited for yet.
func (j *jailProcess) alive() bool {
	select {
	case <-j.done:
		return false
	default:
		return true
	}
}

// waitDone waits until the process has been waited for, at most d.
func (j *jailProcess) waitDone(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-j.done:
	case <-t.C:
	}
}

// killGroup kills nsjail and everything it forked (its process group).
func (j *jailProcess) killGroup() {
	if j.cmd.Process != nil {
		_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// exitState is the process's exit status once the wait for it has
// returned, else nil: cmd.ProcessState is written by the goroutine that
// waits, and read only after it has closed done.
func (j *jailProcess) exitState() *os.ProcessState {
	select {
	case <-j.done:
		return j.cmd.ProcessState
	default:
		return nil
	}
}

// describeExit says how the process ended (or that it runs) and the end
// of its stderr.
func (j *jailProcess) describeExit() string {
	status := "still running"
	if st := j.exitState(); st != nil {
		status = exitText(st)
	}
	if tail := strings.TrimSpace(j.stderr.String()); tail != "" {
		return status + "; stderr: " + tail
	}
	return status
}
