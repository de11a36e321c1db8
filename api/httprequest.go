package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap/zapcore"
)

// httpRequest is a request line's "httpRequest" field, in Cloud Logging's
// HttpRequest format: with it, Cloud Logging shows the line as a request
// (method, status, latency, sizes) and can filter on it.
//
// The values are copied out of the request: fasthttp reuses its buffers
// once the answer is written, and a logger may encode the field later.
type httpRequest struct {
	method, url, protocol string
	status                int
	userAgent, remoteIP   string
	requestSize           int
	responseSize          int
	latency               time.Duration // 0: not known
}

// Longest user agent kept: it is the client's free text.
const maxUserAgent = 256

// newHTTPRequest describes c's request and answer. method and path are
// empty when the request's head could not be read; latency is 0 when the
// start of the request is not known.
func newHTTPRequest(c *fiber.Ctx, method, path string, latency time.Duration) httpRequest {
	r := httpRequest{
		status:       c.Response().StatusCode(),
		remoteIP:     c.IP(),
		responseSize: responseSize(c),
		latency:      latency,
	}
	if method != "" {
		req := c.Request()
		r.method = strings.Clone(method)
		// The path alone: the API takes nothing in the query string, and a
		// query would be the likeliest place for a misplaced secret.
		r.url = strings.Clone(path)
		r.protocol = string(req.Header.Protocol())
		r.userAgent = truncate(string(req.Header.UserAgent()), maxUserAgent)
		// The request line, the header lines as received (the blank line
		// after them included), then the body as read (a chunked one
		// without its framing).
		r.requestSize = len(req.Header.Method()) + 1 + len(req.Header.RequestURI()) + 1 + len(r.protocol) + 2 +
			len(req.Header.RawHeaders()) + len(req.Body())
	}
	return r
}

// responseSize is the answer's header, as set so far, and its body.
func responseSize(c *fiber.Ctx) int {
	res := c.Response()
	n := len(res.Header.Header())
	if res.IsBodyStream() {
		return n + max(res.Header.ContentLength(), 0)
	}
	return n + len(res.Body())
}

// MarshalLogObject writes the fields Cloud Logging reads, leaving out
// those not known.
func (r httpRequest) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if r.method != "" {
		enc.AddString("requestMethod", r.method)
		enc.AddString("requestUrl", r.url)
		enc.AddString("protocol", r.protocol)
		// int64 fields in Cloud Logging's LogEntry, which JSON writes as
		// strings.
		enc.AddString("requestSize", strconv.Itoa(r.requestSize))
		if r.userAgent != "" {
			enc.AddString("userAgent", r.userAgent)
		}
	}
	enc.AddInt("status", r.status)
	if r.remoteIP != "" {
		enc.AddString("remoteIp", r.remoteIP)
	}
	enc.AddString("responseSize", strconv.Itoa(r.responseSize))
	if r.latency > 0 {
		enc.AddString("latency", durationString(r.latency))
	}
	return nil
}

// durationString writes d as a protobuf Duration in JSON: seconds with 0,
// 3, 6 or 9 decimals and an "s" ("0.001234s").
func durationString(d time.Duration) string {
	secs, nanos := int64(d/time.Second), int64(d%time.Second)
	if nanos < 0 {
		nanos = -nanos
	}
	s := strconv.FormatInt(secs, 10)
	if d < 0 && secs == 0 {
		s = "-0"
	}
	switch {
	case nanos == 0:
		return s + "s"
	case nanos%1e6 == 0:
		return s + "." + leftPad(strconv.FormatInt(nanos/1e6, 10), 3) + "s"
	case nanos%1e3 == 0:
		return s + "." + leftPad(strconv.FormatInt(nanos/1e3, 10), 6) + "s"
	default:
		return s + "." + leftPad(strconv.FormatInt(nanos, 10), 9) + "s"
	}
}
