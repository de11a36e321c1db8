package api

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pyexec/pyexec"
)

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                          "0s",
		time.Nanosecond:                            "0.000000001s",
		1234 * time.Microsecond:                    "0.001234s",
		1500 * time.Millisecond:                    "1.500s",
		2 * time.Second:                            "2s",
		90*time.Second + 7*time.Nanosecond:         "90.000000007s",
		time.Second + 120*time.Microsecond:         "1.000120s",
		-1500 * time.Millisecond:                   "-1.500s",
		-time.Millisecond:                          "-0.001s",
		time.Duration(1<<63 - 1):                   "9223372036.854775807s",
		3*time.Hour + 25*time.Millisecond:          "10800.025s",
		59*time.Second + 999999999*time.Nanosecond: "59.999999999s",
	} {
		assert.Equal(t, want, durationString(d), "%d ns", int64(d))
	}
}

// The line as the service's JSON encoder writes it: what Cloud Logging
// reads.
func TestRequestLog_HTTPRequestAsJSON(t *testing.T) {
	var buf strings.Builder
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zap.InfoLevel))
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	app := newApp(t, Config{}, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, log)
	req := postJSON(okScript)
	req.URL.RawQuery = "key=secret-in-query"
	req.Header.Set("User-Agent", strings.Repeat("u", 3000))
	_, err := app.Test(req, -1)
	require.NoError(t, err)
	var line struct {
		HTTPRequest map[string]any `json:"httpRequest"`
	}
	require.NoError(t, json.Unmarshal([]byte(buf.String()), &line), buf.String())
	hr := line.HTTPRequest
	assert.Equal(t, "/execute", hr["requestUrl"], "the path alone")
	assert.NotContains(t, buf.String(), "secret-in-query")
	assert.Equal(t, strings.Repeat("u", maxUserAgent)+"…", hr["userAgent"], "a long user agent is cut")
	assert.Equal(t, 200.0, hr["status"], "a number")
	assert.Regexp(t, `^[1-9][0-9]*$`, hr["requestSize"], "an int64 is a string in LogEntry's JSON")
	assert.Regexp(t, `^[1-9][0-9]*$`, hr["responseSize"])
	assert.Regexp(t, `^0\.[0-9]{3,9}s$`, hr["latency"])
}

// requestSize counts the whole request as it came over the wire: request
// line, header lines, blank line and body.
func TestRequestLog_RequestSizeIsTheBytesSent(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	l := listen(t, Config{}, exec)
	conn := l.dial(t)
	raw := "POST /execute?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
		"X-Request-ID: size-1\r\nUser-Agent: raw/1\r\nContent-Length: " + strconv.Itoa(len(okScript)) + "\r\n\r\n" + okScript
	_, err := io.WriteString(conn, raw)
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode, "%s", body)

	var hr map[string]any
	for _, e := range l.logs.FilterMessage("request").All() {
		if e.ContextMap()["request_id"] == "size-1" {
			hr, _ = e.ContextMap()["httpRequest"].(map[string]any)
		}
	}
	require.NotNil(t, hr, "the line of size-1")
	assert.Equal(t, len(raw), size(t, hr["requestSize"]))
	assert.Equal(t, "/execute", hr["requestUrl"])
	assert.Equal(t, "raw/1", hr["userAgent"])
	assert.Equal(t, "127.0.0.1", hr["remoteIp"])
	// The header as set before it is written lacks what fasthttp adds then
	// (Content-Length, Date): the size is close, not exact.
	assert.Greater(t, size(t, hr["responseSize"]), len(body))
	assert.Less(t, size(t, hr["responseSize"]), len(body)+400)
}

// size reads a requestSize or responseSize: a decimal number in a string.
func size(t *testing.T, v any) int {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%v (%T) is a string", v, v)
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
