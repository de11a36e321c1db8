package jail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Zygote is the one jail of fork isolation. Its harness imports the
// preloaded modules once and never runs a script: on the service's word it
// makes a child in namespaces of its own (see the harness's Zygote), and
// each child serves one script. A zygote that dies is started again by the
// next Fork. Safe for concurrent use.
type Zygote struct {
	s   *Spawner
	log *zap.Logger

	// mu serialises forks and restarts: the zygote answers one fork at a
	// time.
	mu   sync.Mutex
	proc *zygoteProc
	// closed is set by Close; Fork refuses from then on.
	closed bool
}

func newZygote(s *Spawner) *Zygote {
	return &Zygote{s: s, log: s.log.With(zap.String("worker", "zygote"))}
}

// Fork makes a child ready for one script (fork isolation; see Zygote.Fork).
func (s *Spawner) Fork(ctx context.Context) (*Child, error) {
	if s.zygote == nil {
		return nil, errors.New("fork: the jail is not in fork isolation")
	}
	return s.zygote.Fork(ctx)
}

// zygoteProc is one running zygote: nsjail, the harness in it, and the
// control socket between them and the service.
type zygoteProc struct {
	jailProcess
	log *zap.Logger
	cg  *workerCgroup
	ctl *net.UnixConn
	// hostPID is the zygote harness's pid on the host, from the kernel's
	// list of nsjail's children: every child's parent.
	hostPID int
	// forked delivers the replies to fork messages, in order; closed when
	// the control socket ends.
	forked chan forkedMsg

	mu sync.Mutex
	// exits maps a child's pid in the zygote's namespace to the channel
	// its exit status is delivered on.
	exits map[int]chan exitMsg
}

// forkedMsg is the zygote's answer to a fork message, with the child's
// descriptors (its channel, its stdout and stderr) when it made one.
type forkedMsg struct {
	Tag   string
	PID   int
	Error string
	fds   []int
	// exit delivers the zygote's report of how the child ended.
	exit chan exitMsg
}

// exitMsg is the zygote's report of a child it reaped.
type exitMsg struct {
	PID, Signal, Code int
}

// controlMsg is a message on the control socket after the ready message:
// a fork reply (Forked set) or an exit report (Exited set).
type controlMsg struct {
	Forked string `json:"forked"`
	PID    int    `json:"pid"`
	Error  string `json:"error"`
	Exited *int   `json:"exited"`
	Signal int    `json:"signal"`
	Code   int    `json:"code"`
}

// Fork makes a child ready for one script: forked by the zygote, its host
// pid learnt from the kernel, moved into a cgroup of its own. It starts
// the zygote first if none is running.
func (z *Zygote) Fork(ctx context.Context) (*Child, error) {
	p, m, err := z.ask(ctx)
	if err != nil {
		return nil, fmt.Errorf("fork: %w", err)
	}
	// The zygote answers the next fork while this child sets itself up.
	c, err := newChild(ctx, z.s, p, m)
	if err != nil {
		p.forget(m.PID)
		if tail := strings.TrimSpace(p.stderr.String()); tail != "" {
			err = fmt.Errorf("%w; the zygote's stderr: %s", err, tail)
		}
		return nil, fmt.Errorf("fork: %w", err)
	}
	return c, nil
}

// ask has the zygote (started first if none runs) fork one child and
// returns its answer.
func (z *Zygote) ask(ctx context.Context) (*zygoteProc, forkedMsg, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed {
		return nil, forkedMsg{}, errors.New("the jail is closed")
	}
	if z.proc == nil || !z.proc.alive() {
		if z.proc != nil {
			z.log.Warn("the zygote exited; starting another", zap.String("exit", z.proc.describeExit()))
			z.proc.kill()
			z.proc = nil
		}
		p, err := z.start(ctx)
		if err != nil {
			return nil, forkedMsg{}, err
		}
		z.proc = p
	}
	m, err := z.proc.fork(ctx, fmt.Sprintf("c%d", z.s.seq.Add(1)), z.s.cfg.SpawnTimeout)
	return z.proc, m, err
}

// Close kills the zygote and with it every child it made.
func (z *Zygote) Close() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.closed = true
	if z.proc != nil {
		z.proc.kill()
		z.proc = nil
	}
}

// start launches nsjail with the zygote and waits for its ready message.
func (z *Zygote) start(ctx context.Context) (*zygoteProc, error) {
	s := z.s
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control-zygote")
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	cg, err := s.cg.create(fmt.Sprintf("z%d", s.seq.Add(1)))
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &zygoteProc{
		jailProcess: newJailProcess(s.command(cg, s.zygoteArgs)),
		log:         z.log, cg: cg, ctl: conn.(*net.UnixConn),
		forked: make(chan forkedMsg, 1), exits: map[int]chan exitMsg{},
	}
	p.cmd.ExtraFiles = []*os.File{theirs} // descriptor 3 in the jail
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		p.ctl.Close()
		cg.remove()
		return nil, fmt.Errorf("start the zygote: %w", err)
	}
	p.started()
	ready := make(chan readyResult, 1)
	go p.read(ready)

	timer := time.NewTimer(s.cfg.SpawnTimeout)
	defer timer.Stop()
	var msg *readyMsg
	fail := func(err error) (*zygoteProc, error) {
		p.kill()
		return nil, err
	}
	select {
	case r := <-ready:
		if r.err != nil {
			p.waitDone(2 * time.Second)
			return fail(fmt.Errorf("the zygote: %w: %s", r.err, p.describeExit()))
		}
		msg = r.msg
	case <-timer.C:
		return fail(fmt.Errorf("%w: the zygote was not ready after %v: %s", ErrSpawnTimeout, s.cfg.SpawnTimeout, p.stderr.String()))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	p.hostPID = childOf(p.cmd.Process.Pid)
	if p.hostPID == 0 {
		return fail(errors.New("the zygote's host pid cannot be read"))
	}
	// It imported at nice 19 like every spawn; it forks at normal priority.
	_ = unix.Setpriority(unix.PRIO_PROCESS, p.hostPID, 0)
	loop := zap.String("fork_loop", msg.ForkLoop)
	if msg.SharedMemoryError != "" {
		z.log.Warn("zygote ready; its memory is not shared through sealed files, so every fork copies its page tables",
			zap.Int("pid", p.hostPID), zap.String("reason", msg.SharedMemoryError), loop)
	} else {
		z.log.Info("zygote ready", zap.Int("pid", p.hostPID), zap.Int64("shared_memory_bytes", msg.SharedMemory), loop)
	}
	return p, nil
}

// readyResult is the zygote's first message, decoded, or why it is not one.
type readyResult struct {
	msg *readyMsg
	err error
}

// read delivers the control socket's messages until it ends: whether the
// ready message came and is one, fork replies in order, exit reports to
// their children.
func (p *zygoteProc) read(ready chan<- readyResult) {
	defer close(p.forked)
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(3*4))
	first := true
	for {
		n, oobn, _, _, err := p.ctl.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			if first {
				ready <- readyResult{err: errors.New("ended before it was ready")}
			}
			return
		}
		fds := rightsOf(oob[:oobn])
		if first {
			first = false
			closeFDs(fds)
			m, err := decodeReady(buf[:n])
			ready <- readyResult{m, err}
			continue
		}
		var m controlMsg
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			closeFDs(fds)
			p.log.Error("garbled message from the zygote", zap.Error(err))
			_ = p.cmd.Process.Kill()
			continue
		}
		if m.Exited != nil {
			closeFDs(fds)
			p.mu.Lock()
			ch := p.exits[*m.Exited]
			delete(p.exits, *m.Exited)
			p.mu.Unlock()
			if ch != nil {
				ch <- exitMsg{PID: *m.Exited, Signal: m.Signal, Code: m.Code}
			}
			continue
		}
		f := forkedMsg{Tag: m.Forked, PID: m.PID, Error: m.Error, fds: fds}
		if f.PID > 0 {
			// Registered here, before the next message is read: the
			// child's exit report may be that very message.
			f.exit = make(chan exitMsg, 1)
			p.mu.Lock()
			p.exits[f.PID] = f.exit
			p.mu.Unlock()
		}
		p.forked <- f
	}
}

// rightsOf returns the descriptors passed in a control message.
func rightsOf(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// fork asks the zygote for one child, tagged id, and waits for its answer.
func (p *zygoteProc) fork(ctx context.Context, id string, timeout time.Duration) (forkedMsg, error) {
	if _, err := p.ctl.Write([]byte(`{"fork": "` + id + `"}`)); err != nil {
		p.kill()
		return forkedMsg{}, fmt.Errorf("ask the zygote for a child: %w", err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var m forkedMsg
	select {
	case got, ok := <-p.forked:
		if !ok {
			return forkedMsg{}, fmt.Errorf("the zygote ended: %s", p.describeExit())
		}
		m = got
	case <-timer.C:
		p.kill()
		return forkedMsg{}, fmt.Errorf("%w: the zygote made no child within %v", ErrSpawnTimeout, timeout)
	case <-ctx.Done():
		// The answer may still come; this zygote is out of step for good.
		p.kill()
		return forkedMsg{}, ctx.Err()
	}
	if m.Tag != id || m.Error != "" || len(m.fds) != 3 || m.PID <= 0 {
		closeFDs(m.fds)
		p.forget(m.PID)
		if m.Error != "" {
			return forkedMsg{}, fmt.Errorf("the zygote could not fork: %s", m.Error)
		}
		p.kill()
		return forkedMsg{}, fmt.Errorf("the zygote's answer is out of step (%q, %d descriptors)", m.Tag, len(m.fds))
	}
	return m, nil
}

// forget drops the exit channel of the child pid (0: none).
func (p *zygoteProc) forget(pid int) {
	p.mu.Lock()
	delete(p.exits, pid)
	p.mu.Unlock()
}

// kill ends the zygote and every child it made (they live in its pid
// namespace, which dies with it).
func (p *zygoteProc) kill() {
	p.killGroup()
	p.cg.killAll()
	p.waitDone(5 * time.Second)
	p.ctl.Close()
	p.cg.remove()
}

// nsPIDs reads the pids of a process in each pid namespace it is in, from
// the outermost (the host) in.
func nsPIDs(pid int) ([]int, int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, 0, err
	}
	var ns []int
	ppid := 0
	for _, line := range strings.Split(string(data), "\n") {
		name, value, _ := strings.Cut(line, ":")
		switch name {
		case "PPid":
			ppid, _ = strconv.Atoi(strings.TrimSpace(value))
		case "NSpid":
			for _, f := range strings.Fields(value) {
				n, err := strconv.Atoi(f)
				if err != nil {
					return nil, 0, fmt.Errorf("NSpid of %d: %q", pid, value)
				}
				ns = append(ns, n)
			}
		}
	}
	return ns, ppid, nil
}
