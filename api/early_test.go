package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/wire"
)

// listening is the HTTP layer behind a real listener on 127.0.0.1, for what
// only the HTTP server does (reading and refusing requests), with its logs
// and metrics at hand.
type listening struct {
	app     *fiber.App
	addr    string
	logs    *observer.ObservedLogs
	metrics *Metrics
}

func listen(t *testing.T, cfg Config, exec pyexec.Executor) *listening {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	app := newApp(t, cfg, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.New(core))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, app.Shutdown())
		assert.NoError(t, <-served)
	})
	return &listening{app: app, addr: ln.Addr().String(), logs: logs, metrics: cfg.Metrics}
}

func (l *listening) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", l.addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	return conn
}

// count is pyexec_requests_total for one outcome and status.
func (l *listening) count(outcome string, status int) float64 {
	return testutil.ToFloat64(l.metrics.requests.WithLabelValues(outcome, strconv.Itoa(status)))
}

// readAnswer reads one HTTP answer from conn and checks it is one of ours:
// the JSON envelope with the error type, and an X-Request-ID, which it
// returns.
func readAnswer(t *testing.T, conn net.Conn, status int, errType string) string {
	t.Helper()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	assert.Equal(t, status, res.StatusCode, "%s", data)
	assert.Contains(t, res.Header.Get("Content-Type"), "application/json")
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &keys), "not a JSON object: %s", data)
	require.Contains(t, keys, "stdout", "stdout is always there")
	var body wire.Response
	require.NoError(t, json.Unmarshal(data, &body), "not JSON: %s", data)
	assert.Equal(t, "null", string(body.Result))
	assert.Empty(t, body.Stdout)
	require.NotNil(t, body.Error, "%s", data)
	assert.Equal(t, errType, string(body.Error.Type))
	assert.NotEmpty(t, body.Error.Message)
	id := res.Header.Get("X-Request-ID")
	assert.NotEmpty(t, id, "every answer carries X-Request-ID")
	return id
}

// requireLogged checks the one "request" line of the early answer with id.
func (l *listening) requireLogged(t *testing.T, id string, status int, outcome, method, path string) {
	t.Helper()
	req := l.requestLine(t, id, status, outcome)
	assert.NotContains(t, req, "latency", "the start of an early answer's request is not known")
	l.checkHead(t, req, method, path)
}

// requireServed checks the one "request" line of an answer the handlers
// gave, whose latency is known.
func (l *listening) requireServed(t *testing.T, id string, status int, outcome, method, path string) {
	t.Helper()
	req := l.requestLine(t, id, status, outcome)
	assert.Regexp(t, `^[0-9]+\.[0-9]+s$`, req["latency"])
	l.checkHead(t, req, method, path)
}

// requestLine finds the one "request" line of the answer with id and
// returns its httpRequest object.
func (l *listening) requestLine(t *testing.T, id string, status int, outcome string) map[string]any {
	t.Helper()
	var lines []observer.LoggedEntry
	for _, e := range l.logs.FilterMessage("request").All() {
		if e.ContextMap()["request_id"] == id {
			lines = append(lines, e)
		}
	}
	require.Len(t, lines, 1, "one request line for %s", id)
	f := lines[0].ContextMap()
	assert.Equal(t, outcome, f["outcome"])
	req, ok := f["httpRequest"].(map[string]any)
	require.True(t, ok, "the line has an httpRequest object: %v", f)
	assert.EqualValues(t, status, req["status"])
	assert.Equal(t, "127.0.0.1", req["remoteIp"])
	assert.Positive(t, size(t, req["responseSize"]))
	return req
}

// checkHead checks what the line says of the request's head; an empty
// method means the head could not be read.
func (l *listening) checkHead(t *testing.T, req map[string]any, method, path string) {
	t.Helper()
	if method == "" {
		for _, k := range []string{"requestMethod", "requestUrl", "protocol", "requestSize", "userAgent"} {
			assert.NotContains(t, req, k, "the request's head was not kept")
		}
		return
	}
	assert.Equal(t, method, req["requestMethod"])
	assert.Equal(t, path, req["requestUrl"])
	assert.Equal(t, "HTTP/1.1", req["protocol"])
	assert.Positive(t, size(t, req["requestSize"]))
}

func TestEarly_BodyOverTheLimitIs413WithARequestID(t *testing.T) {
	l := listen(t, Config{}, &fakeExecutor{})
	conn := l.dial(t)
	const size = 2 << 20 // over the default limit of 6 × 200 KiB + 64 KiB
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
			"X-Request-ID: big-1\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"+
			`{"script": "`+strings.Repeat("#", size-14)+`"}`)
		sent <- err
	}()
	id := readAnswer(t, conn, 413, "payload_too_large")
	assert.Equal(t, "big-1", id, "the head was read: the client's id is kept")
	l.requireLogged(t, id, 413, "payload_too_large", "POST", "/execute")
	assert.Equal(t, 1.0, l.count("payload_too_large", 413))
	_ = conn.Close()
	<-sent // the service stopped reading: the rest of the body may not get through
}

// A client that sends its whole body before reading, as Python's clients
// do, still gets the 413: the service reads the refused body before it
// answers and closes, so the close resets nothing.
func TestEarly_BodyOverTheLimitIs413ForAClientThatSendsItAllFirst(t *testing.T) {
	l := listen(t, Config{}, &fakeExecutor{})
	for i := 0; i < 5; i++ {
		conn := l.dial(t)
		const size = 2 << 20
		_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
			"Content-Length: "+strconv.Itoa(size)+"\r\n\r\n"+`{"script": "`+strings.Repeat("#", size-14)+`"}`)
		require.NoError(t, err, "the whole body is taken")
		readAnswer(t, conn, 413, "payload_too_large")
	}
}

func TestEarly_SlowBodyIs408(t *testing.T) {
	l := listen(t, Config{ReadTimeout: 300 * time.Millisecond}, &fakeExecutor{})
	conn := l.dial(t)
	// The head and a tenth of the announced body, then nothing.
	_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
		"X-Request-ID: slow-1\r\nContent-Length: 100\r\n\r\n{\"script\":")
	require.NoError(t, err)
	start := time.Now()
	id := readAnswer(t, conn, 408, "request_timeout")
	assert.Less(t, time.Since(start), 5*time.Second)
	// fasthttp empties the request when its body fails: the id is new and
	// the method and path are not known.
	assert.NotEqual(t, "slow-1", id)
	l.requireLogged(t, id, 408, "request_timeout", "", "")
	assert.Equal(t, 1.0, l.count("request_timeout", 408))
	assert.Equal(t, 0.0, l.count("invalid_request", 400), "a slow body is not a malformed one")
}

func TestEarly_SlowHeadIs408(t *testing.T) {
	l := listen(t, Config{ReadTimeout: 300 * time.Millisecond}, &fakeExecutor{})
	conn := l.dial(t)
	_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: localhost\r\n")
	require.NoError(t, err)
	id := readAnswer(t, conn, 408, "request_timeout")
	l.requireLogged(t, id, 408, "request_timeout", "", "")
	assert.Equal(t, 1.0, l.count("request_timeout", 408))
}

func TestEarly_GarbageIs400(t *testing.T) {
	l := listen(t, Config{}, &fakeExecutor{})
	conn := l.dial(t)
	_, err := io.WriteString(conn, "\x16\x03\x01 not HTTP at all\r\nX-Request-ID: forged\r\n\r\n")
	require.NoError(t, err)
	id := readAnswer(t, conn, 400, "invalid_request")
	assert.NotEqual(t, "forged", id, "nothing from a head that could not be parsed is trusted")
	l.requireLogged(t, id, 400, "invalid_request", "", "")
	assert.Equal(t, 1.0, l.count("invalid_request", 400))
}

func TestEarly_HeadOverTheBufferIs431(t *testing.T) {
	l := listen(t, Config{}, &fakeExecutor{})
	conn := l.dial(t)
	_, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: "+strings.Repeat("a", 8192)+"\r\n\r\n")
	require.NoError(t, err)
	id := readAnswer(t, conn, 431, "header_too_large")
	l.requireLogged(t, id, 431, "header_too_large", "", "")
	assert.Equal(t, 1.0, l.count("header_too_large", 431))
}

func TestEarly_UnknownMethodIs405(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	l := listen(t, Config{}, exec)
	conn := l.dial(t)
	_, err := io.WriteString(conn, "BREW /execute HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: brew-1\r\n"+
		"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
	require.NoError(t, err)
	id := readAnswer(t, conn, 405, "method_not_allowed")
	assert.Equal(t, "brew-1", id)
	l.requireLogged(t, id, 405, "method_not_allowed", "BREW", "/execute")
	assert.Equal(t, 1.0, l.count("method_not_allowed", 405))
	assert.Empty(t, exec.got.ID, "nothing ran")
}

// A connection that sends nothing is closed at the read timeout without an
// answer, a log line or a count: there was no request.
func TestEarly_SilentConnectionIsClosedQuietly(t *testing.T) {
	l := listen(t, Config{ReadTimeout: 200 * time.Millisecond}, &fakeExecutor{})
	conn := l.dial(t)
	n, err := conn.Read(make([]byte, 1))
	assert.Zero(t, n, "no answer")
	if !errors.Is(err, io.EOF) {
		require.ErrorIs(t, err, net.ErrClosed)
	}
	assert.Zero(t, l.logs.FilterMessage("request").Len())
	assert.Zero(t, testutil.CollectAndCount(l.metrics.requests))
}

// send writes a raw request on a fresh connection and returns the answer's
// error type (empty for success) and whether the service closed after it.
func (l *listening) send(t *testing.T, head, body string) (status int, errType string, closed bool) {
	t.Helper()
	conn := l.dial(t)
	_, err := io.WriteString(conn, head+"\r\n"+body)
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer res.Body.Close()
	var answer wire.Response
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &answer), "%s", data)
	assert.NotEmpty(t, res.Header.Get("X-Request-ID"))
	if answer.Error != nil {
		errType = string(answer.Error.Type)
	}
	return res.StatusCode, errType, res.Close
}

// Headers that say two things about the body are refused: two differing
// Content-Length headers (the body's end is ambiguous, the connection is
// closed), and more than one Content-Type.
func TestExecute_AmbiguousHeadersAreRefused(t *testing.T) {
	l := listen(t, Config{}, &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}})
	body := `{"script": "def main():\n    return 1\n"}`
	n := strconv.Itoa(len(body))
	const start = "POST /execute HTTP/1.1\r\nHost: localhost\r\n"

	status, errType, closed := l.send(t, start+"Content-Type: application/json\r\nContent-Length: 5\r\nContent-Length: "+n+"\r\n", body)
	assert.Equal(t, 400, status)
	assert.Equal(t, "invalid_request", errType)
	assert.True(t, closed, "after an ambiguous length the connection is closed")

	status, errType, _ = l.send(t, start+"Content-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: "+n+"\r\n", body)
	assert.Equal(t, 415, status)
	assert.Equal(t, "unsupported_media_type", errType)

	status, errType, _ = l.send(t, start+"Content-Type: application/json; foo; charset=latin-1\r\nContent-Length: "+n+"\r\n", body)
	assert.Equal(t, 415, status, "a charset that cannot be read is not taken for UTF-8")
	assert.Equal(t, "unsupported_media_type", errType)

	status, errType, closed = l.send(t, start+"Content-Type: application/json\r\nContent-Length: "+n+"\r\nContent-Length: "+n+"\r\n", body)
	assert.Equal(t, 200, status, "the same length twice is not ambiguous: %s", errType)
	assert.False(t, closed)
}

// A client that stops reading does not keep its answer in the service:
// the write gives up after WriteTimeout and the connection is closed.
func TestExecute_AClientThatStopsReadingIsCutOff(t *testing.T) {
	// Larger than the kernel's largest send buffer (4 MiB here), so the
	// write cannot complete into it.
	big := strings.Repeat("x", 12<<20)
	l := listen(t, Config{WriteTimeout: 200 * time.Millisecond},
		&fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1"), Stdout: big}})
	conn := l.dial(t).(*net.TCPConn)
	require.NoError(t, conn.SetReadBuffer(4096))
	body := `{"script": "def main():\n    return 1\n"}`
	_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	require.NoError(t, err)
	// The service holds the connection while it writes, and lets it go
	// once the write has timed out (the client cannot see that: the close
	// waits behind the data it does not read).
	require.Eventually(t, func() bool { return l.app.Server().GetOpenConnectionsCount() == 1 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return l.app.Server().GetOpenConnectionsCount() == 0 }, 10*time.Second, 10*time.Millisecond,
		"the service closes a connection whose client does not read its answer")
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Second)))
	n, _ := io.Copy(io.Discard, conn)
	assert.Less(t, n, int64(len(big)), "the answer was cut short")
}
