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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pyexec/pyexec"
)

// listening is the HTTP layer behind a real listener on 127.0.0.1, for what
// only the HTTP server does (reading and refusing requests), with its logs
// and metrics at hand.
type listening struct {
	addr    string
	logs    *observer.ObservedLogs
	metrics *Metrics
}

func listen(t *testing.T, cfg Config, exec pyexec.Executor) *listening {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	app := New(cfg, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.New(core))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, app.Shutdown())
		assert.NoError(t, <-served)
	})
	return &listening{addr: ln.Addr().String(), logs: logs, metrics: cfg.Metrics}
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
	var body struct {
		Result json.RawMessage `json:"result"`
		Stdout *string         `json:"stdout"`
		Error  *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(data, &body), "not JSON: %s", data)
	assert.Equal(t, "null", string(body.Result))
	require.NotNil(t, body.Stdout, "stdout is always there")
	assert.Empty(t, *body.Stdout)
	require.NotNil(t, body.Error, "%s", data)
	assert.Equal(t, errType, body.Error.Type)
	assert.NotEmpty(t, body.Error.Message)
	id := res.Header.Get("X-Request-ID")
	assert.NotEmpty(t, id, "every answer carries X-Request-ID")
	return id
}

// requireLogged checks the one "request" line of the answer with id.
func (l *listening) requireLogged(t *testing.T, id string, status int, outcome, method, path string) {
	t.Helper()
	var lines []observer.LoggedEntry
	for _, e := range l.logs.FilterMessage("request").All() {
		if e.ContextMap()["request_id"] == id {
			lines = append(lines, e)
		}
	}
	require.Len(t, lines, 1, "one request line for %s", id)
	f := lines[0].ContextMap()
	assert.EqualValues(t, status, f["status"])
	assert.Equal(t, outcome, f["outcome"])
	assert.Equal(t, method, f["method"])
	assert.Equal(t, path, f["path"])
}

func TestEarly_BodyOverTheLimitIs413WithARequestID(t *testing.T) {
	l := listen(t, Config{}, &fakeExecutor{})
	conn := l.dial(t)
	const size = 2 << 20 // over the default limit of 6 × 200 KiB + 64 KiB
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
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
		_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Content-Length: "+strconv.Itoa(size)+"\r\n\r\n"+`{"script": "`+strings.Repeat("#", size-14)+`"}`)
		require.NoError(t, err, "the whole body is taken")
		readAnswer(t, conn, 413, "payload_too_large")
	}
}

func TestEarly_SlowBodyIs408(t *testing.T) {
	l := listen(t, Config{ReadTimeout: 300 * time.Millisecond}, &fakeExecutor{})
	conn := l.dial(t)
	// The head and a tenth of the announced body, then nothing.
	_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
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
	_, err := io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: x\r\n")
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
	_, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 8192)+"\r\n\r\n")
	require.NoError(t, err)
	id := readAnswer(t, conn, 431, "header_too_large")
	l.requireLogged(t, id, 431, "header_too_large", "", "")
	assert.Equal(t, 1.0, l.count("header_too_large", 431))
}

func TestEarly_UnknownMethodIs405(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	l := listen(t, Config{}, exec)
	conn := l.dial(t)
	_, err := io.WriteString(conn, "BREW /execute HTTP/1.1\r\nHost: x\r\nX-Request-ID: brew-1\r\n"+
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
