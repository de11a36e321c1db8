package api

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pyexec/pyexec"
)

func TestRequestLog_FieldsAndNoScriptOrOutput(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage(`"secret-result"`), Stdout: "secret-stdout"}}
	app := newApp(t, Config{TraceProject: "proj"}, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.New(core))
	req := postJSON(`{"script": "def main(): return 'secret-script'"}`)
	req.Header.Set("X-Request-ID", "req-42")
	req.Header.Set("X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/1;o=1")
	req.Header.Set("User-Agent", "curl/8.5.0")
	res, err := app.Test(req, -1)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)

	entries := logs.FilterMessage("request").All()
	require.Len(t, entries, 1)
	f := entries[0].ContextMap()
	assert.Equal(t, "req-42", f["request_id"])
	assert.Equal(t, "ok", f["outcome"])
	assert.Equal(t, "projects/proj/traces/105445aa7843bc8bf206b12000100000", f["logging.googleapis.com/trace"])
	assert.Equal(t, "0000000000000001", f["logging.googleapis.com/spanId"])
	assert.Equal(t, true, f["logging.googleapis.com/trace_sampled"])
	for _, dup := range []string{"method", "path", "status", "duration_ms"} {
		assert.NotContains(t, f, dup, "%s is in httpRequest", dup)
	}
	hr, ok := f["httpRequest"].(map[string]any)
	require.True(t, ok, "httpRequest is an object: %v", f)
	assert.Equal(t, "POST", hr["requestMethod"])
	assert.Equal(t, "/execute", hr["requestUrl"])
	assert.EqualValues(t, 200, hr["status"])
	assert.Equal(t, "curl/8.5.0", hr["userAgent"])
	assert.Equal(t, "HTTP/1.1", hr["protocol"])
	assert.Contains(t, hr, "remoteIp")
	assert.Regexp(t, `^[0-9]+(\.[0-9]{3}|\.[0-9]{6}|\.[0-9]{9})?s$`, hr["latency"])
	// The body and at least its request line and two header lines.
	script := `{"script": "def main(): return 'secret-script'"}`
	assert.Greater(t, size(t, hr["requestSize"]), len(script)+len("POST /execute HTTP/1.1\r\nUser-Agent: curl/8.5.0\r\n"))
	assert.Greater(t, size(t, hr["responseSize"]), len(body), "the body and the header")
	for _, e := range logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		for _, secret := range []string{"secret-script", "secret-stdout", "secret-result"} {
			assert.NotContains(t, string(line)+e.Message, secret, "scripts and output must not be logged")
		}
	}
}

func TestRateLimit_PerClient(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	l := mcpService(t, Config{RateLimit: 2}, exec)
	send := func(from string) *http.Response {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
		defer hc.CloseIdleConnections()
		res, err := hc.Post("http://"+l.addr+"/execute", "application/json", strings.NewReader(okScript))
		require.NoError(t, err)
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	assert.Equal(t, 200, send("127.0.0.1").StatusCode)
	assert.Equal(t, 200, send("127.0.0.1").StatusCode)
	res := send("127.0.0.1")
	assert.Equal(t, 429, res.StatusCode)
	assert.NotEmpty(t, res.Header.Get("Retry-After"))
	var body map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	assert.Equal(t, "rate_limited", body["error"].(map[string]any)["type"])
	assert.Equal(t, 200, send("127.0.0.2").StatusCode, "another client has its own budget")
}

// An Authorization header is a client only when the service checks it: a
// new header, or a new spelling of the key's, is not a new budget.
func TestRateLimit_AuthorizationIsNoNewBudget(t *testing.T) {
	for name, tc := range map[string]struct {
		key     string
		headers []string
	}{
		"no key configured, any header": {"", []string{"Bearer a", "Bearer b", "x1", "x2"}},
		"the key, spelt differently":    {"k", []string{"Bearer k", "bearer k", "BEARER k", "bEaReR k"}},
	} {
		t.Run(name, func(t *testing.T) {
			exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
			app := newApp(t, Config{RateLimit: 2, APIKey: tc.key}, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
			var statuses []int
			for _, h := range tc.headers {
				req := postJSON(okScript)
				req.Header.Set("Authorization", h)
				res, err := app.Test(req, -1)
				require.NoError(t, err)
				statuses = append(statuses, res.StatusCode)
			}
			assert.Equal(t, []int{200, 200, 429, 429}, statuses)
		})
	}
}

func TestMetrics_ChangeAsRequestsAreServed(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	app := newApp(t, Config{Metrics: m}, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	scrape := func() string {
		res, err := app.Test(httptest.NewRequest(http.MethodGet, "/metrics", nil), -1)
		require.NoError(t, err)
		data, _ := io.ReadAll(res.Body)
		return string(data)
	}
	before := scrape()
	assert.NotContains(t, before, `pyexec_requests_total{outcome="ok",status="200"}`)
	for i := 0; i < 3; i++ {
		_, err := app.Test(postJSON(okScript), -1)
		require.NoError(t, err)
	}
	_, err := app.Test(postJSON(`{}`), -1)
	require.NoError(t, err)
	after := scrape()
	assert.Contains(t, after, `pyexec_requests_total{outcome="ok",status="200"} 3`)
	assert.Contains(t, after, `pyexec_requests_total{outcome="invalid_request",status="400"} 1`)
	assert.Contains(t, after, "pyexec_request_duration_seconds_count 4")
	assert.Contains(t, after, "pyexec_execution_duration_seconds_count 3")
	assert.Contains(t, after, "pyexec_queue_wait_seconds_count 3")
}
