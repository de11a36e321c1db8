package jail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec"
)

// helloLine is a child's first message. Its content says nothing; the
// credentials the kernel attaches to it say which process sent it.
const helloLine = "{\"hello\": true}\n"

// Child is one script's process in fork isolation: made by the Zygote in
// mount, PID, IPC, UTS and network namespaces of its own, in a cgroup of
// its own, and used for one script. Its methods other than Kill and Alive
// are not safe for concurrent use: one owner (the pool) drives it.
type Child struct {
	id  string
	log *zap.Logger
	cfg *Config
	// pid is the child's pid on the host, from the kernel; pidfd refers to
	// it.
	pid   int
	pidfd *pidfd
	// cg is the child's cgroup, taken from and given back to cgroups.
	cg      *workerCgroup
	cgroups *cgroups
	// conn is the child's protocol channel; out and errOut its stdout and
	// stderr, read by the service.
	conn   *net.UnixConn
	out    *outputPipe
	errOut *outputPipe
	lines  chan lineResult
	stop   chan struct{} // closed by Kill
	// exit delivers the zygote's report of how the child ended.
	exit   <-chan exitMsg
	forget func()

	// used is set by the first Run, which from then on owns the output
	// pipes and closes them when it returns; Kill closes them otherwise.
	used     atomic.Bool
	killOnce sync.Once
}

// newChild takes over the descriptors of a child the zygote forked, learns
// its host pid from the kernel and moves it into a cgroup of its own.
func newChild(ctx context.Context, s *Spawner, p *zygoteProc, m forkedMsg) (*Child, error) {
	id := m.Tag
	c := &Child{
		id: id, log: s.log.With(zap.String("worker", id)), cfg: &s.cfg, cgroups: s.cg,
		lines: make(chan lineResult, 1), stop: make(chan struct{}), exit: m.exit,
		forget: func() { p.forget(m.PID) },
	}
	chanFD, outFD, errFD := m.fds[0], m.fds[1], m.fds[2]
	var err error
	if c.out, err = newOutputPipe(outFD, s.cfg.MaxOutputBytes); err != nil {
		closeFDs([]int{chanFD, errFD})
		return nil, err
	}
	if c.errOut, err = newOutputPipe(errFD, s.cfg.MaxOutputBytes); err != nil {
		c.out.close()
		_ = unix.Close(chanFD)
		return nil, err
	}
	f := os.NewFile(uintptr(chanFD), "channel")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		c.out.close()
		c.errOut.close()
		return nil, fmt.Errorf("child channel: %w", err)
	}
	c.conn = conn.(*net.UnixConn)
	fail := func(err error) (*Child, error) {
		c.Kill()
		return nil, err
	}
	if err := c.hello(ctx, p, m.PID, s.cfg.SpawnTimeout); err != nil {
		return fail(err)
	}
	if c.cg, err = s.cg.take(id); err != nil {
		return fail(err)
	}
	for _, procs := range c.cg.procsFiles() {
		if err := writeFile(procs, strconv.Itoa(c.pid)); err != nil {
			return fail(fmt.Errorf("move the child into its cgroup: %w", err))
		}
	}
	// While it waits it only warms up (copies ahead the pages scripts
	// touch), which must not slow down running scripts or the forks of
	// the next children: idle class, and its cgroup at the lowest weight.
	// Run puts both back with the request.
	c.setIdle(true)
	go readLines(c.conn, c.lines, c.stop, s.cfg.maxReplyLine())
	if _, err := c.conn.Write([]byte("{\"placed\": true}\n")); err != nil {
		return fail(fmt.Errorf("child channel: %w", err))
	}
	return c, nil
}

// hello reads the child's first message and the credentials the kernel
// attached to it: the pid in them is the sender's as this process sees it,
// which a process without CAP_SYS_ADMIN cannot choose (and the child has
// dropped every capability before saying hello). The pid is checked to be
// a child of the zygote whose pid in the zygote's namespace is the one the
// zygote reported, before and after a pidfd is opened on it.
func (c *Child) hello(ctx context.Context, p *zygoteProc, zygotePID int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetReadDeadline(deadline)
	buf := make([]byte, len(helloLine)+1)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(16*4))
	n, oobn, _, _, err := c.conn.ReadMsgUnix(buf, oob)
	_ = c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("no hello from the child: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return fmt.Errorf("the child's hello: %w", err)
	}
	pid := 0
	for i := range msgs {
		if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			closeFDs(fds)
		} else if cred, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			pid = int(cred.Pid)
		}
	}
	if string(buf[:n]) != helloLine || pid <= 0 {
		return fmt.Errorf("the child's hello is not one (%q, pid %d)", buf[:n], pid)
	}
	check := func() error {
		ns, ppid, err := nsPIDs(pid)
		if err != nil {
			return fmt.Errorf("the child's pid: %w", err)
		}
		if ppid != p.hostPID || len(ns) < 2 || ns[1] != zygotePID {
			return fmt.Errorf("pid %d is not the zygote's child %d", pid, zygotePID)
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	c.pid, c.pidfd = pid, openPidfd(pid)
	if c.pidfd == nil {
		return fmt.Errorf("pidfd on the child %d", pid)
	}
	return check()
}

// Run sends one script and waits for its answer, at most req.Timeout. If
// ctx ends first the child is killed and ctx's error returned. An error
// wrapping pyexec.ErrNotRun means the script never reached the child (it
// had died while waiting), so it may be tried on another; whatever happens
// once the script has reached it is a Response, with the output the child
// printed up to then.
func (c *Child) Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	if c.used.Swap(true) {
		panic("jail: Run on a child that has run a script")
	}
	defer c.closePipes()
	if !c.Alive() {
		c.Kill()
		return nil, fmt.Errorf("run: %w: the child had exited", pyexec.ErrNotRun)
	}
	line, msgID, err := c.cfg.requestLine(req)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	start := time.Now()
	timer := time.NewTimer(req.Timeout)
	defer timer.Stop()
	writeErr := make(chan error, 1)
	// The script runs in the normal class from its first instruction
	// (threads and processes it starts inherit the class); its cgroup gets
	// its weight back while the child decodes the line: that write is the
	// slower one (about 60 µs after a pause) and would delay the wake-up.
	setPolicy(c.pid, unix.SCHED_NORMAL)
	c.send(line, writeErr)
	if c.cg != nil {
		c.cg.setIdle(false)
	}
	// What a short script prints is taken from the pipes with its
	// answer; one that runs longer has them read as they fill.
	watch := time.AfterFunc(outputWatchDelay, func() {
		c.out.watch()
		c.errOut.watch()
	})
	defer watch.Stop()
	finish := func(resp *pyexec.Response) (*pyexec.Response, error) {
		resp.Stdout, resp.StdoutTruncated = c.out.text()
		resp.Stderr, resp.StderrTruncated = c.errOut.text()
		resp.Duration = time.Since(start)
		return resp, nil
	}
	for {
		select {
		case err := <-writeErr:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				// The child closed its channel or died while reading: what
				// happened shows on the line reader.
				c.log.Debug("send script", zap.Error(err))
			}
			writeErr = nil
		case lr, ok := <-c.lines:
			if ok && lr.err == nil {
				// Everything the script printed before answering is in
				// the pipes now.
				c.out.settle()
				c.errOut.settle()
				// A script that printed past the cap before its pipes
				// were watched is stopped as one that printed while
				// they were.
				if stream := c.overStream(); stream != "" {
					return finish(c.flooded(stream))
				}
				return finish(c.answer(lr.line, msgID))
			}
			return finish(c.ended(lr))
		case <-c.out.over:
			return finish(c.flooded("stdout"))
		case <-c.errOut.over:
			return finish(c.flooded("stderr"))
		case <-timer.C:
			c.Kill()
			c.drain()
			return finish(&pyexec.Response{
				Error: pyexec.Errorf(pyexec.CodeTimeout, "script exceeded the %s time limit", formatSeconds(req.Timeout)),
			})
		case <-ctx.Done():
			c.Kill()
			return nil, fmt.Errorf("run: %w", ctx.Err())
		}
	}
}

// send writes the request line: at once when the socket takes it whole
// (the usual case: the child has read nothing of its channel since it was
// placed), the rest beside the wait otherwise, so that a long line cannot
// outlive the timeout or a kill. done receives the write's outcome.
func (c *Child) send(line []byte, done chan<- error) {
	n := 0
	var err error
	if rc, rerr := c.conn.SyscallConn(); rerr == nil {
		// One non-blocking write: returning true never waits for room.
		_ = rc.Write(func(fd uintptr) bool {
			n, err = unix.Write(int(fd), line)
			return true
		})
	}
	if err == unix.EAGAIN || err == unix.EINTR {
		// Nothing taken: all of it goes beside.
		n, err = 0, nil
	}
	if err != nil || n == len(line) {
		done <- err
		return
	}
	go func() {
		_, err := c.conn.Write(line[n:])
		done <- err
	}()
}

// answer turns the child's reply line into a response. The line is the
// script's to write (see decodeAnswer); it decides this answer only.
func (c *Child) answer(line []byte, msgID string) *pyexec.Response {
	resp, garbled := decodeAnswer(c.cfg, line, msgID)
	if garbled != nil {
		c.log.Warn("garbled reply", zap.Error(garbled))
		c.Kill()
	}
	// stdout and stderr, and whether they were cut, are the service's own
	// reading of the pipes (Run sets them), never what the reply says.
	return resp
}

// overStream names the stream whose output passed the cap, if any.
func (c *Child) overStream() string {
	select {
	case <-c.out.over:
		return "stdout"
	case <-c.errOut.over:
		return "stderr"
	default:
		return ""
	}
}

// flooded stops a child whose output passed the cap, keeping the first
// MaxOutputBytes of it.
func (c *Child) flooded(stream string) *pyexec.Response {
	c.Kill()
	c.drain()
	return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeOutputLimit,
		"script printed more than %d bytes to %s and was stopped", c.cfg.MaxOutputBytes, stream)}
}

// ended explains a child whose channel ended before a reply.
func (c *Child) ended(lr lineResult) *pyexec.Response {
	if errors.Is(lr.err, ErrLineTooLong) {
		c.Kill()
		c.drain()
		return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "the sandbox's reply was larger than allowed")}
	}
	if c.pidfd.alive(exitGrace) {
		// Its channel closed by the script, which lives on.
		c.Kill()
		c.drain()
		return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process closed its channel to the service without answering")}
	}
	var ex *exitMsg
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case m := <-c.exit:
		ex = &m
	case <-t.C:
		c.log.Warn("no exit report for a child that ended")
	}
	oom := c.cg.oomKilled()
	c.Kill()
	c.drain()
	d := death{oom: oom, cgroupNone: c.cg.mode == CgroupNone, memoryMB: c.cfg.MemoryMB}
	if ex != nil {
		d.signal, d.code, d.known = ex.Signal, ex.Code, true
	}
	return &pyexec.Response{Error: d.error()}
}

// drain waits a moment for the output pipes to end (every process that
// held them is dead or dying) and takes what they hold.
func (c *Child) drain() {
	deadline := time.Now().Add(time.Second)
	c.out.awaitEOF(deadline)
	c.errOut.awaitEOF(deadline)
	c.out.settle()
	c.errOut.settle()
}

func (c *Child) closePipes() {
	c.out.close()
	c.errOut.close()
}

// idleTeardown is how long a killed child's teardown runs in the idle
// class before it gets its normal share of the CPU back; killWait how long
// Kill waits for it in all.
const (
	idleTeardown = 100 * time.Millisecond
	killWait     = 5 * time.Second
)

// setIdle moves the child to the idle class and its cgroup to the lowest
// CPU weight, or both back to normal. The caller knows the child is alive
// (its pid is its own).
func (c *Child) setIdle(idle bool) {
	if c.cg != nil {
		c.cg.setIdle(idle)
	}
	policy := uint32(unix.SCHED_NORMAL)
	if idle {
		policy = unix.SCHED_IDLE
	}
	setPolicy(c.pid, policy)
}

// Alive reports whether the child's process is still running, as the
// kernel says through its pidfd.
func (c *Child) Alive() bool { return c.pidfd.alive(0) }

// Kill ends the child and everything in its namespaces, waits until it is
// gone and removes its cgroup. Safe to call more than once and from any
// goroutine.
func (c *Child) Kill() {
	c.killOnce.Do(func() {
		close(c.stop)
		if c.pidfd != nil {
			// Its teardown (its memory and namespaces freed, two
			// milliseconds of CPU for a small script) must not slow the
			// scripts that run now: it goes back to the idle class first.
			if c.pidfd.alive(0) { // its pid is still its own
				c.setIdle(true)
			}
			_ = c.pidfd.signal(unix.SIGKILL)
			// A teardown that the running scripts leave no CPU for (much
			// memory to free on a busy machine) gets its normal share back
			// after idleTeardown, so that the memory is not held for long.
			if c.pidfd.alive(idleTeardown) {
				c.setIdle(false)
				if c.pidfd.alive(killWait - idleTeardown) {
					c.log.Error("child did not exit after SIGKILL", zap.Int("pid", c.pid))
				}
			}
		}
		if c.conn != nil {
			c.conn.Close()
		}
		if !c.used.Load() {
			c.closePipes()
		}
		if c.cg != nil {
			c.cgroups.giveBack(c.cg)
		}
		if c.pidfd != nil {
			c.pidfd.close()
		}
		c.forget()
	})
}
