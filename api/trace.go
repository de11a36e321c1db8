package api

import (
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"
)

// traceContext is the trace a request belongs to, as its caller sent it.
type traceContext struct {
	traceID string // 32 lowercase hex digits, not all zero
	spanID  string // 16 lowercase hex digits, not all zero; empty if not sent
	sampled *bool  // nil if not sent
}

// traceOf reads the request's trace from a W3C traceparent header, else
// from Google's X-Cloud-Trace-Context. traceparent wins when both are
// valid: it is the standard the caller's own tracing (OpenTelemetry) sends
// and propagates, and Google's front ends keep the two the same trace. An
// invalid traceparent is ignored, as the W3C recommendation says, and the
// other header is read instead.
func traceOf(c *fiber.Ctx) (traceContext, bool) {
	if tc, ok := parseTraceparent(c.Get("traceparent")); ok {
		return tc, true
	}
	return parseCloudTraceContext(c.Get("X-Cloud-Trace-Context"))
}

// parseTraceparent reads "VERSION-TRACEID-SPANID-FLAGS" (W3C Trace Context
// level 1): lowercase hex, neither id all zeros, version ff invalid. A
// later version may append fields after a dash; version 00 may not.
func parseTraceparent(h string) (traceContext, bool) {
	const size = 2 + 1 + 32 + 1 + 16 + 1 + 2
	if len(h) < size || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return traceContext{}, false
	}
	version, traceID, spanID, flags := h[:2], h[3:35], h[36:52], h[53:55]
	if !lowerHex(version) || version == "ff" || !lowerHex(flags) || !nonZeroHex(traceID) || !nonZeroHex(spanID) {
		return traceContext{}, false
	}
	if len(h) > size && (version == "00" || h[size] != '-') {
		return traceContext{}, false
	}
	f, _ := strconv.ParseUint(flags, 16, 8)
	sampled := f&1 == 1
	return traceContext{traceID: traceID, spanID: spanID, sampled: &sampled}, true
}

// parseCloudTraceContext reads "TRACE_ID[/SPAN_ID][;o=OPTIONS]": a trace id
// of 32 hex digits, a span id in decimal (an unsigned 64-bit number, not
// zero), and o=1 (sampled) or o=0. Anything else is ignored whole.
func parseCloudTraceContext(h string) (traceContext, bool) {
	rest, options, hasOptions := strings.Cut(h, ";")
	traceID, span, hasSpan := strings.Cut(rest, "/")
	traceID = strings.ToLower(traceID)
	if len(traceID) != 32 || !nonZeroHex(traceID) {
		return traceContext{}, false
	}
	tc := traceContext{traceID: traceID}
	if hasSpan {
		n, err := strconv.ParseUint(span, 10, 64)
		if err != nil || n == 0 || len(span) > 20 {
			return traceContext{}, false
		}
		tc.spanID = leftPad(strconv.FormatUint(n, 16), 16)
	}
	if hasOptions {
		var sampled bool
		switch options {
		case "o=1":
			sampled = true
		case "o=0":
		default:
			return traceContext{}, false
		}
		tc.sampled = &sampled
	}
	return tc, true
}

// fields are the log fields of the trace. With a project, they are Cloud
// Logging's own, which link the line to the trace; without one, a bare id
// under that name would look linked and be nothing of the sort, so it goes
// under plain names.
func (tc traceContext) fields(project string) []zap.Field {
	if project == "" {
		fields := []zap.Field{zap.String("trace_id", tc.traceID)}
		if tc.spanID != "" {
			fields = append(fields, zap.String("span_id", tc.spanID))
		}
		return fields
	}
	fields := []zap.Field{zap.String("logging.googleapis.com/trace", "projects/"+project+"/traces/"+tc.traceID)}
	if tc.spanID != "" {
		fields = append(fields, zap.String("logging.googleapis.com/spanId", tc.spanID))
	}
	if tc.sampled != nil {
		fields = append(fields, zap.Bool("logging.googleapis.com/trace_sampled", *tc.sampled))
	}
	return fields
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func nonZeroHex(s string) bool {
	return lowerHex(s) && strings.Trim(s, "0") != ""
}

func leftPad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat("0", n-len(s)) + s
}
