package api

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// Listener is the service's listener, keeping a list of the connections it
// accepted so that a shutdown can end those fasthttp cannot.
//
// fasthttp counts a connection as busy from its acceptance until its first
// request is answered. A connection that has not sent a byte (Go's HTTP
// client dials spare ones) would hold the shutdown for its whole timeout,
// and, once the shutdown has given up, be served again: fasthttp clears its
// stop flag on return. CloseUnused ends the first kind before the shutdown;
// CloseAll ends whatever is left after it.
type Listener struct {
	net.Listener

	mu     sync.Mutex
	closed bool
	err    error
	conns  map[*trackedConn]struct{}
}

// NewListener wraps ln.
func NewListener(ln net.Listener) *Listener {
	return &Listener{Listener: ln, conns: make(map[*trackedConn]struct{})}
}

// Accept waits for a connection; once the listener is closed, it refuses
// any the kernel still handed over.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// Close stops accepting. It may be called more than once (fasthttp's
// shutdown closes it too) and returns the first call's result.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		l.err = l.Listener.Close()
	}
	return l.err
}

// CloseUnused closes the connections that have not sent a byte, and
// returns how many. A connection whose first bytes have arrived but are not
// read yet is left to finish its request.
func (l *Listener) CloseUnused() int {
	return l.closeIf(func(c *trackedConn) bool { return !c.used.Load() && !c.pending() })
}

// CloseAll closes every connection still open, and returns how many.
func (l *Listener) CloseAll() int {
	return l.closeIf(func(*trackedConn) bool { return true })
}

func (l *Listener) closeIf(match func(*trackedConn) bool) int {
	l.mu.Lock()
	var victims []*trackedConn
	for c := range l.conns {
		if match(c) {
			victims = append(victims, c)
		}
	}
	l.mu.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
	return len(victims)
}

func (l *Listener) forget(c *trackedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// trackedConn notes whether its peer has sent anything and leaves the
// listener's list when closed.
type trackedConn struct {
	net.Conn
	l    *Listener
	used atomic.Bool
	once sync.Once
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.forget(c) })
	return err
}

// pending reports whether bytes are waiting to be read. It peeks without
// waiting and consumes nothing.
func (c *trackedConn) pending() bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	buf := make([]byte, 1)
	_ = raw.Control(func(fd uintptr) {
		n, _, _ = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	return n > 0
}

// SyscallConn exposes the socket, which the disconnect watch peeks at.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no socket")
	}
	return sc.SyscallConn()
}
