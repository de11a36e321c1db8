package jail

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec"
)

// ErrSpawnTimeout is returned by Spawn when the worker was not ready
// within Config.SpawnTimeout.
var ErrSpawnTimeout = errors.New("spawn timed out")

// placeScript puts the shell into each cgroup.procs file given before "--",
// then execs the rest: nsjail and all it starts are confined from the start.
const placeScript = `for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"`

type lineResult struct {
	line []byte
	err  error
}

// Worker is one jailed harness process. Its methods other than Kill are not
// safe for concurrent use: one owner (the pool) drives it.
type Worker struct {
	id     string
	log    *zap.Logger
	cmd    *exec.Cmd
	cg     *workerCgroup
	cfg    *Config
	stdin  *os.File
	stdout *os.File
	// pipeSize is the capacity of the pipe to the harness.
	pipeSize int
	lines    chan lineResult
	done     chan struct{} // closed after cmd.Wait returns
	stop     chan struct{} // closed by Kill: nobody reads lines any more
	stderr   *tailBuffer
	ready    *readyMsg
	// harnessPID is the jailed interpreter's pid on the host (0: unknown),
	// read from the kernel's list of nsjail's children, and pidfd refers
	// to that process (nil if it could not be opened).
	harnessPID int
	pidfd      *os.File
	// childFD is a pidfd on the fork child forked ahead of the next
	// script, kept until the zygote's ready line after it (nil: none). Kill may close it
	// from another goroutine, hence the lock.
	childMu sync.Mutex
	childFD *os.File
	// children is the zygote's /proc children list, kept open (fork
	// isolation only; nil if it could not be opened).
	children *os.File

	reusable bool
	used     bool
	killOnce sync.Once

	// Fork isolation: scripts run so far, and whether the zygote's next
	// ready line (the jail restored) is still to be read.
	fork      bool
	runs      int
	needReady bool
	// nonce is the one the zygote's last ready line carried; its next
	// ready line must repeat it (see readyMsg).
	nonce string
	// maxRuns is this jail's share of Config.MaxRuns.
	maxRuns int
}

// Spawn starts one worker and waits for its ready line, at most
// Config.SpawnTimeout. ctx only bounds the wait; the worker's life is not
// tied to it.
func (s *Spawner) Spawn(ctx context.Context) (*Worker, error) {
	id := fmt.Sprintf("w%d", s.seq.Add(1))
	cg, err := s.cg.create(id)
	if err != nil {
		return nil, fmt.Errorf("spawn worker: %w", err)
	}
	w := &Worker{
		id: id, log: s.log.With(zap.String("worker", id)), cg: cg, cfg: &s.cfg,
		lines: make(chan lineResult, 1), done: make(chan struct{}), stop: make(chan struct{}),
		stderr: &tailBuffer{max: 8 << 10},
		fork:   s.cfg.Isolation == IsolationFork,
	}
	w.maxRuns = jailRuns(s.cfg.MaxRuns)
	if err := w.start(s); err != nil {
		cg.remove()
		return nil, fmt.Errorf("spawn worker: %w", err)
	}
	timer := time.NewTimer(s.cfg.SpawnTimeout)
	defer timer.Stop()
	fail := func(err error) (*Worker, error) {
		w.Kill()
		return nil, fmt.Errorf("spawn worker: %w", err)
	}
	select {
	case lr, ok := <-w.lines:
		if !ok || lr.err != nil {
			w.waitDone(2 * time.Second)
			return fail(fmt.Errorf("no ready line (%v): %s", lr.err, w.describeExit()))
		}
		// The first line comes before any script has been sent: it is the
		// harness's own. Even so only the protocol version and, in fork
		// isolation, the nonce are used; the pid it states is not (the
		// interpreter's host pid comes from the kernel, below).
		ready, err := decodeReady(lr.line)
		if err != nil {
			return fail(fmt.Errorf("%w: %s", err, w.stderr.String()))
		}
		if w.fork && ready.Nonce == "" {
			return fail(errors.New("the zygote's ready line has no nonce"))
		}
		w.ready, w.nonce = ready, ready.Nonce
		w.watchHarness(childOf(w.cmd.Process.Pid))
		if w.fork && w.harnessPID > 0 {
			w.children, _ = os.Open(childrenPath(w.harnessPID))
			// The zygote imported at nice 19 like every spawn; from now on
			// it restores jails at normal priority.
			_ = unix.Setpriority(unix.PRIO_PROCESS, w.harnessPID, 0)
			w.idleChild()
		}
		return w, nil
	case <-w.done:
		return fail(fmt.Errorf("exited during start-up: %s", w.describeExit()))
	case <-timer.C:
		return fail(fmt.Errorf("%w: not ready after %v: %s", ErrSpawnTimeout, s.cfg.SpawnTimeout, w.stderr.String()))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

func (w *Worker) start(s *Spawner) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return err
	}
	var cmd *exec.Cmd
	if procs := w.cg.procsFiles(); len(procs) > 0 {
		args := append([]string{"-c", placeScript, "sh"}, procs...)
		args = append(args, "--", s.nsjail)
		cmd = exec.Command("/bin/sh", append(args, s.args...)...)
	} else {
		cmd = exec.Command(s.nsjail, s.args...)
	}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	// Own process group, so Kill reaches everything nsjail itself forks;
	// and if the service dies, its workers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return err
	}
	w.cmd, w.stdin, w.stdout = cmd, inW, outR
	w.pipeSize = pipeSize(inW)

	// Exactly one goroutine waits for the process; everyone else watches done.
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	go func() {
		_, _ = io.Copy(w.stderr, errR)
		errR.Close()
	}()
	go w.readLines(s.cfg.maxReplyLine())
	return nil
}

// pipeSize is how many bytes the pipe f holds (0 if unknown).
func pipeSize(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil {
			n = v
		}
	})
	return n
}

// readLines delivers protocol lines until the first error, then closes lines.
func (w *Worker) readLines(max int) {
	defer close(w.lines)
	lr := newLineReader(w.stdout, max)
	for {
		line, err := lr.next()
		select {
		case w.lines <- lineResult{line: line, err: err}:
		case <-w.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// idleChild finds the child the zygote forked ahead of the next script and
// puts it in the SCHED_IDLE class: while it waits it only warms up (copies
// ahead the pages scripts touch), which must not slow down running
// scripts, and any of them that wakes up preempts it at once. Run puts it
// back in the normal class with the request. Both are done by the worker's
// owner, so the two cannot race.
func (w *Worker) idleChild() {
	if child := w.child(); child > 0 {
		setPolicy(child, unix.SCHED_IDLE)
		w.watchChild(child)
	}
}

// setPolicy moves pid to a scheduling class (nice 0 in it). A failure only
// costs speed, never isolation, so it is ignored.
func setPolicy(pid int, policy uint32) {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}
	_ = unix.SchedSetAttr(pid, &attr, 0)
}

// jailRuns draws one jail's run limit between four fifths of max and max.
func jailRuns(max int) int {
	if spread := max / 5; spread > 0 {
		return max - rand.IntN(spread)
	}
	return max
}

func childrenPath(pid int) string { return fmt.Sprintf("/proc/%d/task/%d/children", pid, pid) }

// childOf returns the first child of pid, read from /proc, or 0.
func childOf(pid int) int {
	data, err := os.ReadFile(childrenPath(pid))
	if err != nil {
		return 0
	}
	return firstPID(data)
}

// child returns the zygote's current child, or 0. The /proc file stays
// open: reading it again from the start lists the children anew, one
// system call per script instead of three.
func (w *Worker) child() int {
	if w.children == nil {
		return 0
	}
	var buf [64]byte
	n, _ := w.children.ReadAt(buf[:], 0)
	return firstPID(buf[:n])
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

// Reusable reports whether the worker may serve another script. A strict
// worker never does, whatever it answered: once a script has been sent to
// it, its interpreter may be the script's. A fork jail does while it has
// runs left and its child's outcome leaves the jail fit (the pool then
// waits for the zygote's ready line, see AwaitReady).
func (w *Worker) Reusable() bool { return w.reusable }

// Run sends one script and waits for its reply, at most req.Timeout (the
// wall-clock limit, enforced here by killing the worker). If ctx ends first
// the worker is killed and ctx's error returned. Every other error means
// the script never reached the worker (it had died while idle, or did not
// get ready again), so it may be tried on another; whatever happens once
// the script has reached it is a Response.
func (w *Worker) Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	if w.used && !w.reusable {
		panic("jail: Run on a worker that is not reusable")
	}
	w.used, w.reusable = true, false
	if w.needReady {
		if err := w.awaitReady(ctx, 10*time.Second); err != nil {
			w.Kill()
			return nil, fmt.Errorf("run: the worker was not ready: %w", err)
		}
	}
	// A fork jail outlives its scripts, so an OOM kill is this script's
	// only if the count grew; a strict worker's cgroup is its own.
	var oomBefore int64
	if w.fork {
		oomBefore = w.cg.oomKills()
	}
	// The message id is drawn here for this message alone: a script can
	// read it (it is in its interpreter's memory) but it names no other
	// request, and the client's request id never reaches the jail.
	msgID := newMessageID()
	msg := requestMsg{
		ID: msgID, Script: req.Script, TimeoutMS: req.Timeout.Milliseconds(), Args: req.Args,
		Limits: requestLimits{
			MaxOutputBytes:      w.cfg.MaxOutputBytes,
			MaxScriptBytes:      w.cfg.MaxScriptBytes,
			Validation:          w.cfg.Validation.String(),
			MaxOutputFiles:      w.cfg.MaxOutputFiles,
			MaxOutputFilesBytes: w.cfg.MaxOutputFilesBytes,
			MaxFigures:          MaxFigures,
			MaxFigurePixels:     MaxFigurePixels,
		},
	}
	for _, f := range req.Files {
		msg.Files = append(msg.Files, fileMsg{Path: f.Path, Content: base64.StdEncoding.EncodeToString(f.Content)})
	}
	line, err := encodeLine(msg)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	// Workers spawn (the imports) and wait at nsjail's nice level 19; the
	// script runs at 0. With a cgroup cpu controller each worker has a
	// cgroup of its own, so this only orders a worker's own processes;
	// between workers and the service the CPU is shared by cgroup weight,
	// all equal, so a jail started to replace one a bomb broke does not
	// starve behind the bombs still running (see docs/DESIGN-NOTES.md).
	switch {
	case w.fork && w.harnessPID > 0:
		// The child forked ahead of this script (see idleChild).
		if child := w.child(); child > 0 {
			setPolicy(child, unix.SCHED_NORMAL)
		}
	case w.harnessPID > 0:
		_ = unix.Setpriority(unix.PRIO_PROCESS, w.harnessPID, 0)
	}
	start := time.Now()
	timer := time.NewTimer(req.Timeout)
	defer timer.Stop()

	// A line the pipe can hold whole is written at once: the harness has
	// read every line before (it answered them), so the pipe is empty and
	// the write cannot block. A longer one may block while the harness
	// reads it, so it is written beside the wait and cannot outlive the
	// timeout or a kill.
	writeErr := make(chan error, 1)
	send := func() {
		_, err := w.stdin.Write(line)
		writeErr <- err
	}
	if len(line) <= w.pipeSize {
		send()
	} else {
		go send()
	}

	for {
		select {
		case err := <-writeErr:
			if err != nil {
				w.Kill()
				return nil, fmt.Errorf("run: send script: %w", err)
			}
			writeErr = nil
		case lr, ok := <-w.lines:
			resp := w.reply(lr, ok, msgID, oomBefore)
			resp.Duration = time.Since(start)
			return resp, nil
		case <-timer.C:
			w.Kill()
			return &pyexec.Response{
				Error:    pyexec.Errorf(pyexec.CodeTimeout, "script exceeded the %s time limit", formatSeconds(req.Timeout)),
				Duration: time.Since(start),
			}, nil
		case <-ctx.Done():
			w.Kill()
			return nil, fmt.Errorf("run: %w", ctx.Err())
		}
	}
}

// AwaitReady blocks until a fork-isolation worker has restored its jail
// after the previous script (at most 10 s or until ctx ends); for a strict
// worker it returns at once. The pool calls it before putting a worker back,
// so that an idle worker is always ready. On failure the worker is killed.
func (w *Worker) AwaitReady(ctx context.Context) error {
	if !w.needReady {
		return nil
	}
	if err := w.awaitReady(ctx, 10*time.Second); err != nil {
		w.Kill()
		return fmt.Errorf("await ready: %w", err)
	}
	return nil
}

// awaitReady reads the zygote's ready line, sent once it has restored the
// jail after the previous script.
//
// The zygote waits for the child to end, and the child is the script's: it
// can stay alive after its answer (a script can replace the sleep the
// harness takes then, or forge its answer early and carry on). So a child
// still there childGrace after its answer was read is killed, through the
// pidfd taken on it when its request was sent.
func (w *Worker) awaitReady(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	grace := time.NewTimer(childGrace)
	defer grace.Stop()
	for {
		select {
		case <-grace.C:
			w.killChild()
			continue
		case lr, ok := <-w.lines:
			return w.readyAgain(lr, ok)
		case <-t.C:
			return fmt.Errorf("jail not restored within %v", d)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// childGrace is how long a fork child may take to end after its answer has
// been read: it only has to exit (normally a few milliseconds).
const childGrace = 100 * time.Millisecond

// watchChild takes a pidfd on the child forked ahead of the next script,
// for killChild. It is taken while the child waits, off the request's path.
func (w *Worker) watchChild(pid int) {
	fd := openPidfd(pid)
	w.childMu.Lock()
	defer w.childMu.Unlock()
	if w.childFD != nil {
		_ = w.childFD.Close()
	}
	w.childFD = fd
}

// killChild kills the child that ran the last script, if it still runs.
func (w *Worker) killChild() { w.dropChild(true) }

func (w *Worker) closeChild() { w.dropChild(false) }

// dropChild lets go of the pidfd on the last child, killing it first if
// kill is set.
func (w *Worker) dropChild(kill bool) {
	w.childMu.Lock()
	defer w.childMu.Unlock()
	if w.childFD == nil {
		return
	}
	if kill {
		_ = unix.PidfdSendSignal(int(w.childFD.Fd()), unix.SIGKILL, nil, 0)
	}
	_ = w.childFD.Close()
	w.childFD = nil
}

// openPidfd opens a pidfd on pid, or returns nil (pid unknown, or gone).
func openPidfd(pid int) *os.File {
	if pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "pidfd")
}

// readyAgain checks the line read after a child as the zygote's ready line.
func (w *Worker) readyAgain(lr lineResult, ok bool) error {
	w.closeChild()
	if !ok || lr.err != nil {
		return fmt.Errorf("no ready line: %v", lr.err)
	}
	// A child, or anything it left running, may write this line too; only
	// the zygote knows the nonce that lets the jail serve again.
	m, err := decodeReady(lr.line)
	if err != nil {
		return err
	}
	if !w.follows(m) {
		return errors.New("ready line out of step with the zygote's last one")
	}
	w.nonce, w.needReady = m.Nonce, false
	w.idleChild()
	return nil
}

// reply turns what the reader delivered into a response.
//
// Every byte of it comes from a process that ran, or could have run, the
// script, which can write any line on the protocol descriptor, with the
// real message id (it is in its own interpreter's memory), and stay alive.
// So nothing read here lets the worker serve again: a strict worker is
// retired whatever it answers, and a fork jail serves again only after the
// zygote's ready line, which the script cannot forge (see awaitReady). What
// each field can be made to say, and why acting on it is safe, is noted
// where it is read.
func (w *Worker) reply(lr lineResult, ok bool, msgID string, oomBefore int64) *pyexec.Response {
	if !ok || lr.err != nil {
		if errors.Is(lr.err, ErrLineTooLong) {
			w.Kill()
			return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "the sandbox's reply was larger than allowed")}
		}
		return &pyexec.Response{Error: w.endedWithoutReply()}
	}
	if w.fork {
		// A line repeating the nonce the zygote drew after forking this
		// child: the zygote says the child ended without answering, and
		// how (a signal or exit status it read from waitpid).
		if m := w.restored(lr.line); m != nil {
			w.nonce = m.Nonce
			return &pyexec.Response{Error: w.childDeathError(m, oomBefore)}
		}
	}
	// id: a line answering another message (a guess, or a stale id) is
	// refused; the right id only lets the script answer for itself.
	m, err := decodeReply(lr.line, msgID)
	if err != nil {
		w.log.Warn("garbled reply", zap.Error(err))
		w.Kill()
		return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "the sandbox sent an invalid reply")}
	}
	// stdout, stderr: the script's own output, whatever it claims. The cap
	// is applied here as well as in the harness; a script's truncation flag
	// can only mark its own output cut, never hide a cut made here.
	resp := &pyexec.Response{}
	resp.Stdout, resp.StdoutTruncated = capText(m.Stdout, w.cfg.MaxOutputBytes, m.StdoutTruncated)
	resp.Stderr, resp.StderrTruncated = capText(m.Stderr, w.cfg.MaxOutputBytes, m.StderrTruncated)
	// figures: the script's own drawings, whatever they claim to be; each
	// is checked here to be a PNG, and its size is read from the PNG.
	resp.Figures = checkFigures(m.Figures, w.cfg.MaxOutputBytes)
	if m.Error != nil {
		// error.type: a script can claim any outcome for itself; only the
		// codes a script can cause are taken, anything else reads as a
		// sandbox failure. It decides this answer and, in a fork jail,
		// whether the jail is replaced sooner, never that it is kept.
		// message, traceback: the script's own text for its own client.
		code := pyexec.Code(m.Error.Type)
		if !pyexec.IsScriptCode(code) {
			code = pyexec.CodeSandbox
		}
		resp.Error = &pyexec.Error{Code: code, Message: m.Error.Message, Traceback: m.Error.Traceback}
		if code == pyexec.CodeMemoryLimit {
			resp.Error.Message = fmt.Sprintf("script exceeded the memory limit (%d MB)", w.cfg.MemoryMB)
		}
	} else if err := checkResult(m.Result, w.cfg.MaxOutputBytes); err != nil {
		// result: passed to the client as it is, so it is checked here to
		// be JSON any client reads: within the cap, UTF-8, no lone
		// surrogate.
		resp.Error = err
	} else {
		resp.Result = m.Result
	}
	// files: the script's own files for its own client; what it claims
	// about them (sizes, count, paths) is checked again here.
	resp.Files, resp.FilesLeftOut, resp.FilesTruncated = checkFiles(m, w.cfg.MaxOutputFiles, w.cfg.MaxOutputFilesBytes)
	if w.fork {
		w.runs++
		w.needReady = true
		w.reusable = w.runs < w.maxRuns && (resp.Error == nil || recoverable(resp.Error.Code))
	}
	return resp
}

// capText cuts s to at most max bytes, at a character boundary, and says
// whether it is cut (or was already, as claimed).
func capText(s string, max int, claimed bool) (string, bool) {
	if len(s) <= max {
		return s, claimed
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// checkResult refuses a result no JSON reader could take as it is: over
// the cap, not UTF-8, or holding half of a surrogate pair. raw is already
// known to be JSON (the reply decoded).
func checkResult(raw []byte, max int) *pyexec.Error {
	if len(raw) > max {
		return pyexec.Errorf(pyexec.CodeOutputLimit, "result is %d bytes, over the %d-byte limit", len(raw), max)
	}
	if !utf8.Valid(raw) {
		return pyexec.Errorf(pyexec.CodeInvalidResult, "Returned value is not valid JSON: it holds bytes that are not UTF-8")
	}
	if esc, ok := pyexec.LoneSurrogate(raw); ok {
		return pyexec.Errorf(pyexec.CodeInvalidResult,
			"Returned value is not valid JSON: a string holds %s, half of a surrogate pair without the other half", esc)
	}
	return nil
}

// recoverable outcomes leave a fork jail fit for the next script; after
// the others (a timeout, a memory limit, a crash) the jail is replaced.
func recoverable(c pyexec.Code) bool {
	switch c {
	case pyexec.CodeValidation, pyexec.CodeRuntime, pyexec.CodeInvalidResult, pyexec.CodeOutputLimit:
		return true
	}
	return false
}

// restored returns line as the zygote's ready line if it is the genuine
// one that follows the current child (it repeats the last nonce), else nil.
func (w *Worker) restored(line []byte) *readyMsg {
	if !bytes.Contains(line, []byte(`"done"`)) {
		return nil // a reply (the common case): no need to decode it twice
	}
	m, err := decodeReady(line)
	if err != nil || !w.follows(m) {
		return nil
	}
	return m
}

// follows reports whether m is the zygote's ready line that comes after
// the current child: it repeats the nonce of the last one and brings a new.
func (w *Worker) follows(m *readyMsg) bool {
	return m.Done == w.nonce && m.Nonce != ""
}

// childDeathError explains a forked child that ended without answering.
func (w *Worker) childDeathError(m *readyMsg, oomBefore int64) *pyexec.Error {
	if w.cg.oomKills() > oomBefore {
		return pyexec.Errorf(pyexec.CodeMemoryLimit, "script exceeded the memory limit (%d MB)", w.cfg.MemoryMB)
	}
	switch {
	case syscall.Signal(m.Signal) == syscall.SIGXCPU:
		return pyexec.Errorf(pyexec.CodeTimeout, "script exceeded its CPU time limit")
	case m.Signal == int(syscall.SIGKILL) && w.cg.mode == CgroupNone:
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process was killed (possibly out of memory)")
	case m.Signal != 0:
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process died of signal %d (%v)", m.Signal, syscall.Signal(m.Signal))
	default:
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process exited before answering (exit status %d)", m.ExitCode)
	}
}

// endedWithoutReply explains a worker whose protocol output ended before
// a reply. If the interpreter is still alive (the kernel says so, through
// its pidfd), it closed its end of the protocol itself, as a script can: it
// is killed at once rather than waited for.
func (w *Worker) endedWithoutReply() *pyexec.Error {
	if w.harnessAlive(exitGrace) {
		w.Kill()
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process closed its channel to the service without answering")
	}
	w.waitDone(2 * time.Second)
	return w.deathError()
}

// watchHarness records the jailed interpreter's host pid (0: unknown) and
// opens a pidfd on it, through which the kernel tells when it has exited.
func (w *Worker) watchHarness(pid int) {
	w.harnessPID, w.pidfd = pid, openPidfd(pid)
}

// exitGrace is how long a harness whose output has ended is given to be
// seen exiting: the kernel closes an exiting process's descriptors a moment
// before its pidfd reports it gone (longer for a process with several
// threads), and in that moment it must not pass for one that closed its
// channel and lives on.
const exitGrace = 100 * time.Millisecond

// harnessAlive reports whether the jailed interpreter has not exited within
// wait. Without a pidfd it is taken as gone, so the caller waits for the
// process.
func (w *Worker) harnessAlive(wait time.Duration) bool {
	if w.pidfd == nil {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(w.pidfd.Fd()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(wait.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 0
	}
}

// deathError explains a worker that ended without replying.
func (w *Worker) deathError() *pyexec.Error {
	if w.cg.oomKilled() {
		return pyexec.Errorf(pyexec.CodeMemoryLimit, "script exceeded the memory limit (%d MB)", w.cfg.MemoryMB)
	}
	// nsjail exits with 128+N when the jailed process died of signal N.
	st := w.exitState()
	if st != nil && st.Exited() && st.ExitCode() > 128 {
		sig := syscall.Signal(st.ExitCode() - 128)
		switch sig {
		case syscall.SIGXCPU:
			return pyexec.Errorf(pyexec.CodeTimeout, "script exceeded its CPU time limit")
		case syscall.SIGKILL:
			if w.cg.mode == CgroupNone {
				return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process was killed (possibly out of memory)")
			}
		}
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process died of signal %d (%v)", int(sig), sig)
	}
	w.log.Warn("worker exited without a reply", zap.String("exit", w.describeExit()))
	return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process exited before answering (%s)", exitText(st))
}

// exitState is the process's exit status once the wait for it has
// returned, else nil: cmd.ProcessState is written by the goroutine that
// waits, and read only after it has closed done.
func (w *Worker) exitState() *os.ProcessState {
	select {
	case <-w.done:
		return w.cmd.ProcessState
	default:
		return nil
	}
}

func exitText(st *os.ProcessState) string {
	if st == nil {
		return "unknown status"
	}
	return st.String()
}

func (w *Worker) describeExit() string {
	status := "still running"
	if st := w.exitState(); st != nil {
		status = exitText(st)
	}
	if tail := strings.TrimSpace(w.stderr.String()); tail != "" {
		return status + "; stderr: " + tail
	}
	return status
}

func (w *Worker) waitDone(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
}

// Kill ends the worker and everything it started, waits until the process
// is gone and removes its cgroup. It is safe to call more than once and from
// any goroutine; later calls wait for the first to finish.
func (w *Worker) Kill() {
	w.killOnce.Do(func() {
		if w.cmd == nil || w.cmd.Process == nil {
			return
		}
		close(w.stop)
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		w.cg.killAll()
		w.waitDone(5 * time.Second)
		select {
		case <-w.done:
		default:
			w.log.Error("worker did not exit after SIGKILL", zap.Int("pid", w.cmd.Process.Pid))
		}
		w.cg.remove()
		w.stdin.Close()
		w.stdout.Close()
		if w.children != nil {
			w.children.Close()
		}
		if w.pidfd != nil {
			w.pidfd.Close()
		}
		w.closeChild()
	})
}

// Alive reports whether the worker's process is still running.
func (w *Worker) Alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
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
