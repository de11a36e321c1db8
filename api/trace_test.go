package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pyexec/pyexec"
)

const (
	traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanID  = "00f067aa0ba902b7"
)

func TestParseTraceparent(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name, header string
		want         *traceContext // nil: ignored
	}{
		{"sampled", "00-" + traceID + "-" + spanID + "-01", &traceContext{traceID, spanID, &yes}},
		{"not sampled", "00-" + traceID + "-" + spanID + "-00", &traceContext{traceID, spanID, &no}},
		{"other flags kept apart from sampled", "00-" + traceID + "-" + spanID + "-02", &traceContext{traceID, spanID, &no}},
		{"later version with more fields", "01-" + traceID + "-" + spanID + "-01-what-comes-next", &traceContext{traceID, spanID, &yes}},
		{"later version, exact size", "cc-" + traceID + "-" + spanID + "-01", &traceContext{traceID, spanID, &yes}},
		{"empty", "", nil},
		{"version ff", "ff-" + traceID + "-" + spanID + "-01", nil},
		{"version 00 with more fields", "00-" + traceID + "-" + spanID + "-01-x", nil},
		{"later version, no dash after", "01-" + traceID + "-" + spanID + "-01x", nil},
		{"trace id all zeros", "00-" + strings.Repeat("0", 32) + "-" + spanID + "-01", nil},
		{"span id all zeros", "00-" + traceID + "-" + strings.Repeat("0", 16) + "-01", nil},
		{"upper case hex", "00-" + strings.ToUpper(traceID) + "-" + spanID + "-01", nil},
		{"trace id too short", "00-" + traceID[:31] + "-" + spanID + "-01", nil},
		{"trace id too long", "00-" + traceID + "0-" + spanID + "-01", nil},
		{"span id too short", "00-" + traceID + "-" + spanID[:15] + "-01", nil},
		{"not hex", "00-" + traceID[:31] + "g-" + spanID + "-01", nil},
		{"flags not hex", "00-" + traceID + "-" + spanID + "-0x", nil},
		{"flags one digit", "00-" + traceID + "-" + spanID + "-1", nil},
		{"version not hex", "zz-" + traceID + "-" + spanID + "-01", nil},
		{"wrong separators", "00_" + traceID + "_" + spanID + "_01", nil},
		{"spaces around", " 00-" + traceID + "-" + spanID + "-01", nil},
		{"huge", "00-" + traceID + "-" + spanID + "-01" + strings.Repeat("-a", 1<<16), nil},
		{"cloud format", traceID + "/1;o=1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseTraceparent(tc.header)
			if tc.want == nil {
				assert.False(t, ok, "%+v", got)
				return
			}
			require.True(t, ok)
			assert.Equal(t, *tc.want, got)
		})
	}
}

func TestParseCloudTraceContext(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name, header string
		want         *traceContext // nil: ignored
	}{
		{"sampled", traceID + "/1;o=1", &traceContext{traceID, "0000000000000001", &yes}},
		{"not sampled", traceID + "/12345;o=0", &traceContext{traceID, "0000000000003039", &no}},
		{"no options", traceID + "/18446744073709551615", &traceContext{traceID, "ffffffffffffffff", nil}},
		{"trace id alone", traceID, &traceContext{traceID, "", nil}},
		{"trace id and options", traceID + ";o=1", &traceContext{traceID, "", &yes}},
		{"upper case trace id is lowered", strings.ToUpper(traceID) + "/1", &traceContext{traceID, "0000000000000001", nil}},
		{"span with leading zeros", traceID + "/007", &traceContext{traceID, "0000000000000007", nil}},
		{"empty", "", nil},
		{"trace id all zeros", strings.Repeat("0", 32) + "/1;o=1", nil},
		{"trace id too short", traceID[:31] + "/1;o=1", nil},
		{"trace id too long", traceID + "a/1;o=1", nil},
		{"trace id not hex", traceID[:31] + "z/1;o=1", nil},
		{"span zero", traceID + "/0;o=1", nil},
		{"span empty", traceID + "/;o=1", nil},
		{"span in hex", traceID + "/" + spanID + ";o=1", nil},
		{"span negative", traceID + "/-1;o=1", nil},
		{"span with a sign", traceID + "/+1;o=1", nil},
		{"span with underscores", traceID + "/1_000", nil},
		{"span over 64 bits", traceID + "/18446744073709551616", nil},
		{"span far too long", traceID + "/" + strings.Repeat("0", 30) + "1", nil},
		{"unknown option", traceID + "/1;o=2", nil},
		{"other option", traceID + "/1;x=1", nil},
		{"empty options", traceID + "/1;", nil},
		{"traceparent", "00-" + traceID + "-" + spanID + "-01", nil},
		{"huge", traceID + "/1;o=1" + strings.Repeat("1", 1<<16), nil},
		{"control characters", traceID + "/1\n;o=1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseCloudTraceContext(tc.header)
			if tc.want == nil {
				assert.False(t, ok, "%+v", got)
				return
			}
			require.True(t, ok)
			assert.Equal(t, *tc.want, got)
		})
	}
}

// requestLine sends one request with headers and returns the fields of its
// log line.
func requestLine(t *testing.T, project string, headers map[string]string) map[string]any {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	app := newApp(t, Config{TraceProject: project}, &fakeExecutor{}, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.New(core))
	req, err := http.NewRequest(http.MethodGet, "/health", nil)
	require.NoError(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	_, err = app.Test(req, -1)
	require.NoError(t, err)
	entries := logs.FilterMessage("request").All()
	require.Len(t, entries, 1)
	return entries[0].ContextMap()
}

const (
	traceKey   = "logging.googleapis.com/trace"
	spanKey    = "logging.googleapis.com/spanId"
	sampledKey = "logging.googleapis.com/trace_sampled"
)

func TestRequestLog_TraceparentWinsOverCloudTraceContext(t *testing.T) {
	other := "0af7651916cd43dd8448eb211c80319c"
	f := requestLine(t, "proj", map[string]string{
		"traceparent":           "00-" + traceID + "-" + spanID + "-00",
		"X-Cloud-Trace-Context": other + "/1;o=1",
	})
	assert.Equal(t, "projects/proj/traces/"+traceID, f[traceKey])
	assert.Equal(t, spanID, f[spanKey])
	assert.Equal(t, false, f[sampledKey])
}

func TestRequestLog_InvalidTraceparentFallsBackToCloudTraceContext(t *testing.T) {
	other := "0af7651916cd43dd8448eb211c80319c"
	f := requestLine(t, "proj", map[string]string{
		"traceparent":           "00-" + strings.Repeat("0", 32) + "-" + spanID + "-01",
		"X-Cloud-Trace-Context": other + "/255;o=1",
	})
	assert.Equal(t, "projects/proj/traces/"+other, f[traceKey])
	assert.Equal(t, "00000000000000ff", f[spanKey])
	assert.Equal(t, true, f[sampledKey])
}

func TestRequestLog_TraceWithoutSpanOrSampling(t *testing.T) {
	f := requestLine(t, "proj", map[string]string{"X-Cloud-Trace-Context": traceID})
	assert.Equal(t, "projects/proj/traces/"+traceID, f[traceKey])
	assert.NotContains(t, f, spanKey)
	assert.NotContains(t, f, sampledKey)
}

// Without a project the id cannot be linked, so it is not written where
// Cloud Logging would take it for a link.
func TestRequestLog_TraceWithoutAProjectIsNotLinked(t *testing.T) {
	f := requestLine(t, "", map[string]string{"traceparent": "00-" + traceID + "-" + spanID + "-01"})
	assert.Equal(t, traceID, f["trace_id"])
	assert.Equal(t, spanID, f["span_id"])
	for _, k := range []string{traceKey, spanKey, sampledKey} {
		assert.NotContains(t, f, k)
	}
}

func TestRequestLog_NoTraceHeaderNoTraceFields(t *testing.T) {
	f := requestLine(t, "proj", map[string]string{"X-Cloud-Trace-Context": "not-a-trace/1;o=1"})
	for _, k := range []string{traceKey, spanKey, sampledKey, "trace_id", "span_id"} {
		assert.NotContains(t, f, k)
	}
}
