package api

import (
	"errors"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec"
)

// answerEarlyErrors sends the answers that fasthttp and fiber make on their
// own, before any middleware runs, through the same JSON envelope, request
// id, log line and counter as every other answer:
//   - a request that cannot be read whole, answered by fasthttp's
//     Server.ErrorHandler: body over the limit (413), head over the read
//     buffer (431), too slow (408), malformed (400);
//   - a method fiber does not know, which it refuses before routing.
//
// It replaces fiber's own server error handler, which hands the app's error
// handler a bare context that no middleware has seen.
func (s *server) answerEarlyErrors(app *fiber.App) {
	srv := app.Server()
	srv.ErrorHandler = func(fctx *fasthttp.RequestCtx, err error) { s.readFailed(app, fctx, err) }
	route := srv.Handler
	srv.Handler = func(fctx *fasthttp.RequestCtx) {
		if m := fctx.Method(); !knownMethod(m) {
			if isToken(m) {
				s.answerEarly(app, fctx, pyexec.Errorf(pyexec.CodeMethodNotAllowed, "unknown HTTP method"))
			} else {
				// Not HTTP: nothing more on this connection is worth parsing.
				fctx.Request.Header.Reset()
				fctx.SetConnectionClose()
				s.answerEarly(app, fctx, errMalformed())
			}
			return
		}
		route(fctx)
	}
}

// knownMethod reports whether fiber routes method (its default list).
func knownMethod(method []byte) bool {
	for _, m := range fiber.DefaultMethods {
		if string(method) == m {
			return true
		}
	}
	return false
}

// readFailed answers a request fasthttp could not read.
//
// A connection that breaks before its request has arrived whole (reset, or
// closed by the service's shutdown) gets nothing, and neither does one that
// stayed silent for the whole ReadTimeout: there is no request, and no one
// to answer. Neither is logged or counted.
func (s *server) readFailed(app *fiber.App, fctx *fasthttp.RequestCtx, err error) {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &netErr) && netErr.Timeout():
		if n, ok := bytesReceived(fctx.Conn()); ok && n == 0 {
			_ = fctx.Conn().Close()
			return
		}
		if s.cfg.BaseContext.Err() != nil {
			s.answerEarly(app, fctx, errShuttingDown(err))
			return
		}
		s.answerEarly(app, fctx, errRequestTimeout())
	case errors.As(err, &opErr):
		_ = fctx.Conn().Close()
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.drainBody(fctx)
		s.answerEarly(app, fctx, errBodyTooLarge())
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)):
		s.answerEarly(app, fctx, errHeaderTooLarge())
	default:
		// The cause is not logged: fasthttp quotes the request's head in
		// it, Authorization header included.
		s.answerEarly(app, fctx, errMalformed())
	}
}

// Bounds of the read that discards a refused body.
const (
	drainMaxFactor = 8                      // at most this many body limits
	drainIdle      = 100 * time.Millisecond // the client has sent it all
	drainMax       = 5 * time.Second
)

// drainBody reads and discards a body refused for its size, up to a bound,
// before the answer is written. Most clients (Python's among them) send
// their whole body before they read: were the connection closed with their
// body unread, the kernel would reset it and the 413 would be lost with it.
// A body announced far beyond the limit is not read; its client may see a
// reset instead of the answer.
func (s *server) drainBody(fctx *fasthttp.RequestCtx) {
	n := int64(fctx.Request.Header.ContentLength())
	if n <= 0 || n > drainMaxFactor*int64(s.cfg.BodyLimit) {
		return
	}
	conn := fctx.Conn()
	deadline := time.Now().Add(drainMax)
	buf := make([]byte, 64<<10)
	for n > 0 && time.Now().Before(deadline) {
		next := time.Now().Add(drainIdle)
		if next.After(deadline) {
			next = deadline
		}
		_ = conn.SetReadDeadline(next)
		k, err := conn.Read(buf)
		n -= int64(k)
		if err != nil {
			break
		}
	}
}

func errMalformed() *pyexec.Error {
	return pyexec.Errorf(pyexec.CodeInvalidRequest, "malformed HTTP request")
}

// answerEarly writes ae, then logs and counts the answer. Early answers are
// counted whatever their path, since most have none: they are requests the
// service never routed.
func (s *server) answerEarly(app *fiber.App, fctx *fasthttp.RequestCtx, ae *pyexec.Error) {
	c := app.AcquireCtx(fctx)
	defer app.ReleaseCtx(c)
	// fasthttp empties the request when it fails to read the body, and a
	// head it failed to parse holds nothing parsed: then the id is the
	// service's own and the method and path are not known.
	var id, method, path string
	if len(fctx.Request.Header.RawHeaders()) > 0 {
		id, method, path = s.assignRequestID(c), truncate(c.Method(), 32), c.Path()
	} else {
		fctx.Request.Header.Reset()
		id = uuid.NewString()
		c.Locals(localRequestID, id)
		c.Set("X-Request-ID", id)
	}
	if err := s.writeError(c, ae); err != nil {
		s.log.Error("write error response", zap.Error(err))
	}
	s.cfg.Metrics.countRequest(outcomeOf(c), c.Response().StatusCode())
	// No latency: the service cannot tell when such a request began.
	s.logRequest(c, id, method, path, 0)
}

// isToken reports whether b is an RFC 9110 token, which a method must be.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, ch := range b {
		if ch <= ' ' || ch >= 0x7f || slices.Contains([]byte(`"(),/:;<=>?@[\]{}`), ch) {
			return false
		}
	}
	return true
}

// bytesReceived is how many bytes the peer has sent on conn, from the
// kernel's TCP counters; ok is false when they cannot be read.
func bytesReceived(conn net.Conn) (n uint64, ok bool) {
	sc, isSocket := conn.(syscall.Conn)
	if !isSocket {
		return 0, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var infoErr error
	if err := raw.Control(func(fd uintptr) {
		info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || infoErr != nil {
		return 0, false
	}
	return info.Bytes_received, true
}
