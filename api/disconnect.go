package api

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// errClientGone is the cause of a request context cancelled because the
// client closed its connection.
var errClientGone = errors.New("client closed the connection")

// watchPeerClose returns a context that is cancelled, with cause
// errClientGone, when the peer of conn closes or resets the connection.
// fasthttp does not cancel a request when its client goes away; without
// this, an abandoned script would keep its worker until its timeout.
//
// It peeks (MSG_PEEK) so that no byte is consumed, and stops at the first
// readable event that is not a close (pipelined data). stop must be called
// before the handler returns: it ends the watch and restores the conn.
func watchPeerClose(parent context.Context, conn net.Conn) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return ctx, func() { cancel(nil) }
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1)
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EINTR)
		})
		if err != nil {
			return // stopped by the deadline set in stop, or conn closed
		}
		if (rerr == nil && n == 0) || rerr != nil {
			cancel(errClientGone)
		}
	}()
	stop := func() {
		_ = conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = conn.SetReadDeadline(time.Time{})
		cancel(nil)
	}
	return ctx, stop
}
