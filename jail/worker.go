package jail

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
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
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec"
)

// ErrSpawnTimeout is returned by Spawn when the worker was not ready
// within Config.SpawnTimeout.
var ErrSpawnTimeout = errors.New("spawn timed out")

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

	used     bool
	killOnce sync.Once
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
	}
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
		// harness's own. Even so only the protocol version is used; the pid
		// it states is not (the interpreter's host pid comes from the
		// kernel, below).
		ready, err := decodeReady(lr.line)
		if err != nil {
			return fail(fmt.Errorf("%w: %s", err, w.stderr.String()))
		}
		w.ready = ready
		w.watchHarness(childOf(w.cmd.Process.Pid))
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
	cmd := s.command(w.cg, s.args)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
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

// Run sends one script and waits for its reply, at most req.Timeout (the
// wall-clock limit, enforced here by killing the worker). If ctx ends first
// the worker is killed and ctx's error returned. An error wrapping
// pyexec.ErrNotRun means the script never reached the worker (it had died
// while idle), so it may be tried on another; whatever happens once the
// script has reached it is a Response.
func (w *Worker) Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	if w.used {
		panic("jail: Run on a worker that has run a script")
	}
	w.used = true
	line, msgID, err := w.cfg.requestLine(req)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	// Workers spawn (the imports) and wait at nsjail's nice level 19; the
	// script runs at 0. With a cgroup cpu controller each worker has a
	// cgroup of its own, so this only orders a worker's own processes;
	// between workers and the service the CPU is shared by cgroup weight,
	// all equal, so a jail started to replace one a bomb broke does not
	// starve behind the bombs still running (see docs/DESIGN-NOTES.md).
	if w.harnessPID > 0 {
		_ = unix.Setpriority(unix.PRIO_PROCESS, w.harnessPID, 0)
	}
	start := time.Now()
	timer := time.NewTimer(req.Timeout)
	defer timer.Stop()

	// A line the pipe can hold whole is written at once: the harness has
	// read nothing yet, so the pipe is empty and the write cannot block. A
	// longer one may block while the harness reads it, so it is written
	// beside the wait and cannot outlive the timeout or a kill.
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
				return nil, fmt.Errorf("run: send script: %w: %w", pyexec.ErrNotRun, err)
			}
			writeErr = nil
		case lr, ok := <-w.lines:
			resp := w.reply(lr, ok, msgID)
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

// requestLine encodes one script for the harness, with a message id drawn
// for this message alone: a script can read it (it is in its interpreter's
// memory) but it names no other request, and the client's request id never
// reaches the jail.
func (c *Config) requestLine(req pyexec.Request) (line []byte, msgID string, err error) {
	msgID = newMessageID()
	msg := requestMsg{
		ID: msgID, Script: req.Script, TimeoutMS: req.Timeout.Milliseconds(), Args: req.Args,
		Limits: requestLimits{
			MaxOutputBytes:      c.MaxOutputBytes,
			MaxScriptBytes:      c.MaxScriptBytes,
			Validation:          c.Validation.String(),
			MaxOutputFiles:      c.MaxOutputFiles,
			MaxOutputFilesBytes: c.MaxOutputFilesBytes,
			MaxFigures:          MaxFigures,
			MaxFigurePixels:     MaxFigurePixels,
		},
	}
	for _, f := range req.Files {
		msg.Files = append(msg.Files, fileMsg{Path: f.Path, Content: base64.StdEncoding.EncodeToString(f.Content)})
	}
	line, err = encodeLine(msg)
	return line, msgID, err
}

// reply turns what the reader delivered into a response.
func (w *Worker) reply(lr lineResult, ok bool, msgID string) *pyexec.Response {
	if !ok || lr.err != nil {
		if errors.Is(lr.err, ErrLineTooLong) {
			w.Kill()
			return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "the sandbox's reply was larger than allowed")}
		}
		return &pyexec.Response{Error: w.endedWithoutReply()}
	}
	resp, garbled := decodeAnswer(w.cfg, lr.line, msgID)
	if garbled != nil {
		w.log.Warn("garbled reply", zap.Error(garbled))
		w.Kill()
	}
	return resp
}

// decodeAnswer turns a reply line into a response; garbled is set (and
// the response is a sandbox error) when the line is not a reply to msgID.
//
// Every byte of the line comes from a process that ran, or could have run,
// the script, which can write any line on its channel, with the real
// message id (it is in its own interpreter's memory), and stay alive. So
// nothing read here lets a worker serve again (every worker serves one
// script) or decides anything beyond this answer. What each field can be
// made to say, and why acting on it is safe, is noted where it is read.
func decodeAnswer(cfg *Config, line []byte, msgID string) (resp *pyexec.Response, garbled error) {
	// id: a line answering another message (a guess, or a stale id) is
	// refused; the right id only lets the script answer for itself.
	m, err := decodeReply(line, msgID)
	if err != nil {
		return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "the sandbox sent an invalid reply")}, err
	}
	// stdout, stderr: the script's own output, whatever it claims. The cap
	// is applied here as well as in the harness; a script's truncation flag
	// can only mark its own output cut, never hide a cut made here.
	resp = &pyexec.Response{}
	resp.Stdout, resp.StdoutTruncated = capText(m.Stdout, cfg.MaxOutputBytes, m.StdoutTruncated)
	resp.Stderr, resp.StderrTruncated = capText(m.Stderr, cfg.MaxOutputBytes, m.StderrTruncated)
	// figures: the script's own drawings, whatever they claim to be; each
	// is checked here to be a PNG, and its size is read from the PNG.
	resp.Figures = checkFigures(m.Figures, cfg.MaxOutputBytes)
	if m.Error != nil {
		// error.type: a script can claim any outcome for itself; only the
		// codes a script can cause are taken, anything else reads as a
		// sandbox failure. It decides this answer only.
		// message, traceback: the script's own text for its own client.
		code := pyexec.Code(m.Error.Type)
		if !pyexec.IsScriptCode(code) {
			code = pyexec.CodeSandbox
		}
		resp.Error = &pyexec.Error{Code: code, Message: m.Error.Message, Traceback: m.Error.Traceback}
		if code == pyexec.CodeMemoryLimit {
			resp.Error.Message = fmt.Sprintf("script exceeded the memory limit (%d MB)", cfg.MemoryMB)
		}
	} else if err := checkResult(m.Result, cfg.MaxOutputBytes); err != nil {
		// result: passed to the client as it is, so it is checked here to
		// be JSON any client reads: within the cap, UTF-8, no lone
		// surrogate.
		resp.Error = err
	} else {
		resp.Result = m.Result
	}
	// files: the script's own files for its own client; what it claims
	// about them (sizes, count, paths) is checked again here.
	resp.Files, resp.FilesLeftOut, resp.FilesTruncated = checkFiles(m, cfg.MaxOutputFiles, cfg.MaxOutputFilesBytes)
	return resp, nil
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
func (w *Worker) harnessAlive(wait time.Duration) bool { return pidfdAlive(w.pidfd, wait) }

// deathError explains a worker that ended without replying.
func (w *Worker) deathError() *pyexec.Error {
	d := death{oom: w.cg.oomKilled(), cgroupNone: w.cg.mode == CgroupNone, memoryMB: w.cfg.MemoryMB}
	// nsjail exits with 128+N when the jailed process died of signal N.
	if st := w.exitState(); st != nil && st.Exited() {
		d.known = true
		if st.ExitCode() > 128 {
			d.signal = st.ExitCode() - 128
		} else {
			d.code = st.ExitCode()
		}
	}
	if !d.oom && d.signal == 0 {
		w.log.Warn("worker exited without a reply", zap.String("exit", w.describeExit()))
	}
	return d.error()
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
		if w.pidfd != nil {
			w.pidfd.Close()
		}
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
