package jail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec"
)

// ErrSpawnTimeout is returned by Spawn when the worker was not ready
// within Config.SpawnTimeout.
var ErrSpawnTimeout = errors.New("spawn timed out")

// Worker is one jailed harness process. Its methods other than Kill are not
// safe for concurrent use: one owner (the pool) drives it.
type Worker struct {
	jailProcess
	id     string
	log    *zap.Logger
	cg     *workerCgroup
	cfg    *Config
	stdin  *os.File
	stdout *os.File
	// pipeSize is the capacity of the pipe to the harness.
	pipeSize int
	lines    chan lineResult
	stop     chan struct{} // closed by Kill: nobody reads lines any more
	ready    *readyMsg
	// harnessPID is the jailed interpreter's pid on the host (0: unknown),
	// read from the kernel's list of nsjail's children, and pidfd refers
	// to that process (nil if it could not be opened).
	harnessPID int
	pidfd      *pidfd

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
		lines: make(chan lineResult, 1), stop: make(chan struct{}),
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
	w.jailProcess = newJailProcess(s.command(w.cg, s.args))
	cmd := w.cmd
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
	w.stdin, w.stdout = inW, outR
	w.pipeSize = pipeSize(inW)
	w.started()
	go func() {
		_, _ = io.Copy(w.stderr, errR)
		errR.Close()
	}()
	go readLines(w.stdout, w.lines, w.stop, s.cfg.maxReplyLine())
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
func (w *Worker) harnessAlive(wait time.Duration) bool { return w.pidfd.alive(wait) }

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

// Kill ends the worker and everything it started, waits until the process
// is gone and removes its cgroup. It is safe to call more than once and from
// any goroutine; later calls wait for the first to finish.
func (w *Worker) Kill() {
	w.killOnce.Do(func() {
		if w.cmd == nil || w.cmd.Process == nil {
			return
		}
		close(w.stop)
		w.killGroup()
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
			w.pidfd.close()
		}
	})
}

// Alive reports whether the worker's process is still running.
func (w *Worker) Alive() bool { return w.alive() }
