package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/wire"
)

// fakeExecutor answers with whatever the test sets and records the request.
type fakeExecutor struct {
	resp *pyexec.Response
	err  error
	got  pyexec.Request
}

func (f *fakeExecutor) Execute(_ context.Context, req pyexec.Request) (*pyexec.Response, error) {
	f.got = req
	return f.resp, f.err
}

// answer is one HTTP answer: its status, headers, top-level keys (to see
// which are present) and its envelope.
type answer struct {
	Status int
	Header http.Header
	Raw    map[string]json.RawMessage
	Body   wire.Response
}

// do sends one request, as JSON unless headers say otherwise (a header
// given an empty value is left out).
func do(t *testing.T, cfg Config, exec pyexec.Executor, method, path, body string, headers ...string) answer {
	t.Helper()
	ready := true
	app := newApp(t, cfg, exec, func() pyexec.Status { return pyexec.Status{Ready: ready} }, zap.NewNop())
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := app.Test(req, -1)
	require.NoError(t, err)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	var a answer
	a.Status, a.Header = res.StatusCode, res.Header
	require.True(t, json.Valid(data), "body is not JSON: %s", data)
	require.NoError(t, json.Unmarshal(data, &a.Raw), "body is not a JSON object: %s", data)
	require.NoError(t, json.Unmarshal(data, &a.Body))
	return a
}

// assertShape checks the three keys of the original API are always there.
func assertShape(t *testing.T, a answer) {
	t.Helper()
	for _, k := range []string{"result", "stdout", "error"} {
		_, ok := a.Raw[k]
		assert.True(t, ok, "key %q missing", k)
	}
}

const okScript = `{"script": "def main():\n    return 1"}`

func TestExecute_ErrorTable(t *testing.T) {
	ok := &pyexec.Response{Result: json.RawMessage(`{"message":"success"}`), Stdout: "hello from sandbox\n"}
	script := func(code pyexec.Code, msg string) *fakeExecutor {
		return &fakeExecutor{resp: &pyexec.Response{Stdout: "before\n", Error: &pyexec.Error{Code: code, Message: msg}}}
	}
	big := `{"script": "` + strings.Repeat("#", 300*1024) + `"}`
	cases := []struct {
		name    string
		exec    *fakeExecutor
		method  string
		path    string
		body    string
		headers []string
		cfg     Config
		status  int
		errType string
	}{
		{name: "success", exec: &fakeExecutor{resp: ok}, body: okScript, status: 200},
		{name: "body not JSON is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{nope`, status: 400, errType: "invalid_request"},
		{name: "JSON array is invalid_request", exec: &fakeExecutor{resp: ok}, body: `[1]`, status: 400, errType: "invalid_request"},
		{name: "body not UTF-8 is invalid_request", exec: &fakeExecutor{resp: ok}, body: "{\"script\": \"def main():\n    return '\xff'\"}", status: 400, errType: "invalid_request"},
		{name: "escaped lone low surrogate is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "def main():\n    return '\udc80'"}`, status: 400, errType: "invalid_request"},
		{name: "escaped high surrogate without its pair is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x = '\uD83D\u0041'"}`, status: 400, errType: "invalid_request"},
		{name: "escaped surrogate pair is a character", exec: &fakeExecutor{resp: ok}, body: `{"script": "x = '\ud83d\ude00 \\udc80'"}`, status: 200},
		{name: "missing script is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"code": "x"}`, status: 400, errType: "invalid_request"},
		{name: "numeric script is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": 5}`, status: 400, errType: "invalid_request"},
		{name: "null script is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": null}`, status: 400, errType: "invalid_request"},
		{name: "string timeout is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "timeout": "5"}`, status: 400, errType: "invalid_request"},
		{name: "negative timeout is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "timeout": -1}`, status: 400, errType: "invalid_request"},
		{name: "zero timeout is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "timeout": 0}`, status: 400, errType: "invalid_request"},
		{name: "timeout over the max is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "timeout": 31}`, status: 400, errType: "invalid_request"},
		{name: "args as an array is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "args": ["Oslo"]}`, status: 400, errType: "invalid_request"},
		{name: "args as a string is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "args": "{\"city\": \"Oslo\"}"}`, status: 400, errType: "invalid_request"},
		{name: "args as a number is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "args": 1}`, status: 400, errType: "invalid_request"},
		{name: "args as a boolean is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "args": false}`, status: 400, errType: "invalid_request"},
		{name: "args with a lone surrogate is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "args": {"s": "\udc80"}}`, status: 400, errType: "invalid_request"},
		{name: "args with a lone surrogate in a name is invalid_request", exec: &fakeExecutor{resp: ok}, body: `{"script": "x", "args": {"\ud83d": 1}}`, status: 400, errType: "invalid_request"},
		{name: "script over the size limit is validation_error", exec: &fakeExecutor{resp: ok}, body: big, cfg: Config{BodyLimit: 4 << 20}, status: 400, errType: "validation_error"},
		{name: "validation from the harness is 400", exec: script(pyexec.CodeValidation, "script must define main()"), body: okScript, status: 400, errType: "validation_error"},
		{name: "runtime_error is 200", exec: script(pyexec.CodeRuntime, "ValueError: boom"), body: okScript, status: 200, errType: "runtime_error"},
		{name: "invalid_result is 200", exec: script(pyexec.CodeInvalidResult, "Returned value is not valid JSON: x"), body: okScript, status: 200, errType: "invalid_result"},
		{name: "timeout is 200", exec: script(pyexec.CodeTimeout, "script exceeded the 1s time limit"), body: okScript, status: 200, errType: "timeout"},
		{name: "memory_limit is 200", exec: script(pyexec.CodeMemoryLimit, "m"), body: okScript, status: 200, errType: "memory_limit"},
		{name: "output_limit is 200", exec: script(pyexec.CodeOutputLimit, "o"), body: okScript, status: 200, errType: "output_limit"},
		{name: "sandbox_error is 200", exec: script(pyexec.CodeSandbox, "s"), body: okScript, status: 200, errType: "sandbox_error"},
		{name: "missing key is unauthorized", exec: &fakeExecutor{resp: ok}, body: okScript, cfg: Config{APIKey: "k3y"}, status: 401, errType: "unauthorized"},
		{name: "wrong key is unauthorized", exec: &fakeExecutor{resp: ok}, body: okScript, cfg: Config{APIKey: "k3y"}, headers: []string{"Authorization", "Bearer nope"}, status: 401, errType: "unauthorized"},
		{name: "right key is served", exec: &fakeExecutor{resp: ok}, body: okScript, cfg: Config{APIKey: "k3y"}, headers: []string{"Authorization", "Bearer k3y"}, status: 200},
		{name: "text/plain is unsupported_media_type", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Type", "text/plain"}, status: 415, errType: "unsupported_media_type"},
		{name: "a form is unsupported_media_type", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, errType: "unsupported_media_type"},
		{name: "no Content-Type is unsupported_media_type", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Type", ""}, status: 415, errType: "unsupported_media_type"},
		{name: "JSON in another charset is unsupported_media_type", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Type", "application/json; charset=iso-8859-1"}, status: 415, errType: "unsupported_media_type"},
		{name: "a JSON suffix type is unsupported_media_type", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Type", "application/problem+json"}, status: 415, errType: "unsupported_media_type"},
		{name: "JSON in any case with a UTF-8 charset is served", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Type", "Application/JSON; Charset=\"UTF-8\""}, status: 200},
		{name: "JSON with other parameters is served", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Type", "application/json;v=1"}, status: 200},
		{name: "gzip is unsupported_media_type", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Encoding", "gzip"}, status: 415, errType: "unsupported_media_type"},
		{name: "identity after gzip is unsupported_media_type", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Encoding", "gzip, identity"}, status: 415, errType: "unsupported_media_type"},
		{name: "identity encoding is served", exec: &fakeExecutor{resp: ok}, body: okScript, headers: []string{"Content-Encoding", "Identity"}, status: 200},
		{name: "without the key, the key is asked for before the media type", exec: &fakeExecutor{resp: ok}, body: okScript, cfg: Config{APIKey: "k3y"}, headers: []string{"Content-Type", "text/plain", "Content-Encoding", "gzip"}, status: 401, errType: "unauthorized"},
		{name: "with the key, the media type is checked", exec: &fakeExecutor{resp: ok}, body: okScript, cfg: Config{APIKey: "k3y"}, headers: []string{"Authorization", "Bearer k3y", "Content-Type", "text/plain"}, status: 415, errType: "unsupported_media_type"},
		{name: "unknown path is not_found", exec: &fakeExecutor{resp: ok}, path: "/nope", body: "", status: 404, errType: "not_found"},
		{name: "wrong method is method_not_allowed", exec: &fakeExecutor{resp: ok}, method: http.MethodGet, body: "", status: 405, errType: "method_not_allowed"},
		{name: "overloaded is 503", exec: &fakeExecutor{err: &pyexec.Error{Code: pyexec.CodeOverloaded, Message: "busy"}}, body: okScript, status: 503, errType: "overloaded"},
		{name: "trailing slash is not_found", exec: &fakeExecutor{resp: ok}, path: "/execute/", body: okScript, status: 404, errType: "not_found"},
		{name: "upper case is not_found", exec: &fakeExecutor{resp: ok}, path: "/EXECUTE", body: okScript, status: 404, errType: "not_found"},
		{name: "capitalised is not_found", exec: &fakeExecutor{resp: ok}, path: "/Execute", body: okScript, status: 404, errType: "not_found"},
		{name: "doubled slash is not_found", exec: &fakeExecutor{resp: ok}, path: "//execute", body: okScript, status: 404, errType: "not_found"},
		{name: "unexpected failure is internal_error", exec: &fakeExecutor{err: errors.New("disk on fire at /secret/path")}, body: okScript, status: 500, errType: "internal_error"},
		{name: "non-script code from executor is internal_error", exec: script(pyexec.CodeNotFound, "x"), body: okScript, status: 500, errType: "internal_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/execute"
			}
			a := do(t, tc.cfg, tc.exec, method, path, tc.body, tc.headers...)
			assert.Equal(t, tc.status, a.Status)
			assertShape(t, a)
			assert.NotEmpty(t, a.Header.Get("X-Request-ID"))
			if a.Status >= 400 && a.Status < 500 && tc.errType != "validation_error" {
				assert.Empty(t, tc.exec.got.ID, "refused before the executor saw it")
			}
			if tc.errType == "" {
				assert.Nil(t, a.Body.Error)
				assert.JSONEq(t, `{"message":"success"}`, string(a.Body.Result))
				assert.Equal(t, "hello from sandbox\n", a.Body.Stdout)
				return
			}
			require.NotNil(t, a.Body.Error)
			assert.Equal(t, tc.errType, string(a.Body.Error.Type))
			assert.NotEmpty(t, a.Body.Error.Message)
			assert.Equal(t, "null", string(a.Body.Result))
			assert.NotContains(t, a.Body.Error.Message, "/secret/path", "internal details must not leak")
		})
	}
}

func TestExecute_ScriptErrorKeepsStdoutAndTraceback(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Stdout: "before\n", Error: &pyexec.Error{
		Code: pyexec.CodeRuntime, Message: "ValueError: boom", Traceback: "Traceback...\nValueError: boom\n"}}}
	a := do(t, Config{}, exec, http.MethodPost, "/execute", okScript)
	assert.Equal(t, "before\n", a.Body.Stdout)
	assert.Equal(t, "ValueError: boom", a.Body.Error.Message)
	assert.Contains(t, a.Body.Error.Traceback, "ValueError: boom")
}

func TestExecute_OverloadedSetsRetryAfter(t *testing.T) {
	exec := &fakeExecutor{err: &pyexec.Error{Code: pyexec.CodeOverloaded, Message: "busy"}}
	a := do(t, Config{RetryAfter: 2 * time.Second}, exec, http.MethodPost, "/execute", okScript)
	assert.Equal(t, "2", a.Header.Get("Retry-After"))
}

func TestExecute_PassesTimeoutAndRequestID(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	a := do(t, Config{}, exec, http.MethodPost, "/execute", `{"script": "s", "timeout": 2.5, "extra": true}`, "X-Request-ID", "abc-123")
	assert.Equal(t, 200, a.Status)
	assert.Equal(t, 2500*time.Millisecond, exec.got.Timeout)
	assert.Equal(t, "abc-123", exec.got.ID)
	assert.Equal(t, "abc-123", a.Header.Get("X-Request-ID"))

	do(t, Config{DefaultTimeout: 3 * time.Second}, exec, http.MethodPost, "/execute", `{"script": "s"}`)
	assert.Equal(t, 3*time.Second, exec.got.Timeout)
	// A positive timeout too small for a worker to keep is a millisecond,
	// never zero.
	do(t, Config{}, exec, http.MethodPost, "/execute", `{"script": "s", "timeout": 1e-300}`)
	assert.Equal(t, time.Millisecond, exec.got.Timeout)
}

// blockingExecutor runs until its context ends, like a script cut off by
// the service's shutdown, and says when it has started.
type blockingExecutor struct{ started chan struct{} }

func (b *blockingExecutor) Execute(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
	close(b.started)
	<-ctx.Done()
	return nil, fmt.Errorf("worker killed: %w", context.Cause(ctx))
}

func TestExecute_CutOffByShutdownIsOverloaded(t *testing.T) {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	exec := &blockingExecutor{started: make(chan struct{})}
	go func() {
		<-exec.started
		cancel() // what cmd/pyexecd does when the graceful shutdown runs out of time
	}()
	a := do(t, Config{BaseContext: base, RetryAfter: 2 * time.Second}, exec, http.MethodPost, "/execute", okScript)
	assert.Equal(t, 503, a.Status)
	require.NotNil(t, a.Body.Error)
	assert.Equal(t, pyexec.CodeOverloaded, a.Body.Error.Type)
	assert.Equal(t, "the service is shutting down", a.Body.Error.Message)
	assert.Equal(t, "2", a.Header.Get("Retry-After"))
}

func TestExecute_NullResultIsKept(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("null")}}
	a := do(t, Config{}, exec, http.MethodPost, "/execute", okScript)
	assert.Equal(t, 200, a.Status)
	assert.Equal(t, "null", string(a.Body.Result))
	assert.Nil(t, a.Body.Error)
}

func TestHealth(t *testing.T) {
	for _, ready := range []bool{true, false} {
		app := newApp(t, Config{}, &fakeExecutor{}, func() pyexec.Status {
			return pyexec.Status{Ready: ready, Limits: pyexec.Limits{Cgroup: "v1"}}
		}, zap.NewNop())
		res, err := app.Test(httptest.NewRequest(http.MethodGet, "/health", nil), -1)
		require.NoError(t, err)
		var body map[string]any
		require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
		if ready {
			assert.Equal(t, 200, res.StatusCode)
			assert.Equal(t, "ok", body["status"])
		} else {
			assert.Equal(t, 503, res.StatusCode)
			assert.Equal(t, "unavailable", body["status"])
		}
		assert.Equal(t, "v1", body["limits"].(map[string]any)["cgroup"])
	}
}

func TestHealthStaysOpenWithAPIKey(t *testing.T) {
	app := newApp(t, Config{APIKey: "k"}, &fakeExecutor{}, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	res, err := app.Test(httptest.NewRequest(http.MethodGet, "/health", nil), -1)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
}

func TestStatusOfCoversEveryCode(t *testing.T) {
	want := map[pyexec.Code]int{
		pyexec.CodeInvalidRequest: 400, pyexec.CodeValidation: 400, pyexec.CodePayloadTooLarge: 413,
		pyexec.CodeHeaderTooLarge: 431, pyexec.CodeUnsupportedMediaType: 415, pyexec.CodeRequestTimeout: 408,
		pyexec.CodeRateLimited: 429,
		pyexec.CodeRuntime:     200, pyexec.CodeInvalidResult: 200, pyexec.CodeTimeout: 200,
		pyexec.CodeMemoryLimit: 200, pyexec.CodeOutputLimit: 200, pyexec.CodeSandbox: 200,
		pyexec.CodeUnauthorized: 401, pyexec.CodeForbidden: 403, pyexec.CodeNotFound: 404, pyexec.CodeMethodNotAllowed: 405,
		pyexec.CodeOverloaded: 503, pyexec.CodeInternal: 500,
	}
	// Every code, from the list the root package checks against its
	// constants: a new code fails here until its status is decided.
	for _, code := range pyexec.Codes() {
		status, ok := want[code]
		if assert.True(t, ok, "no expected status for %q", code) {
			assert.Equal(t, status, StatusOf(code), string(code))
		}
	}
	assert.Len(t, want, len(pyexec.Codes()), "an expected status for a code that does not exist")
	assert.Equal(t, 500, StatusOf(pyexec.Code("something_new")), "an unknown code is the service's failure")
}

func TestDecodeRequestKeepsItsOwnCopyOfTheScript(t *testing.T) {
	s := &server{cfg: Config{MaxScriptBytes: 1024, DefaultTimeout: time.Second, MaxTimeout: time.Second}}
	require.NoError(t, s.cfg.check())
	buf := []byte(`{"script": "def main(): return 1"}`)
	req, err := s.decodeRequest(buf)
	require.NoError(t, err)
	copy(buf, bytes.Repeat([]byte("X"), len(buf)))
	assert.Equal(t, "def main(): return 1", req.Script)
}

// The body limit is enforced by the HTTP server while reading, so this one
// needs a real listener rather than app.Test.
func TestExecute_BodyOverLimitIsPayloadTooLarge(t *testing.T) {
	app := newApp(t, Config{BodyLimit: 64 * 1024}, &fakeExecutor{}, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })

	// Announce a large body and send none: the server must answer from the
	// Content-Length alone, without reading (or waiting for) the body.
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 307200\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, 413, res.StatusCode)
	var body map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	assert.Equal(t, "payload_too_large", body["error"].(map[string]any)["type"])
	assert.Contains(t, body, "stdout")
	assert.Contains(t, body, "result")
}

// postJSON is a POST /execute of body as a client should send it.
func postJSON(body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/execute", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// newApp builds the app with the limits cfg leaves out set to the values
// the tests are written against.
func newApp(t testing.TB, cfg Config, exec pyexec.Executor, health HealthFunc, log *zap.Logger) *fiber.App {
	t.Helper()
	if cfg.MaxScriptBytes == 0 {
		cfg.MaxScriptBytes = 200 << 10
	}
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = 30 * time.Second
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = min(5*time.Second, cfg.MaxTimeout)
	}
	app, err := New(cfg, exec, health, log)
	require.NoError(t, err)
	return app
}

func TestNew_RefusesAMissingLimit(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no script limit":          {DefaultTimeout: time.Second, MaxTimeout: time.Second},
		"no default timeout":       {MaxScriptBytes: 1, MaxTimeout: time.Second},
		"default over the max":     {MaxScriptBytes: 1, DefaultTimeout: 2 * time.Second, MaxTimeout: time.Second},
		"nothing set (zero value)": {},
	} {
		_, err := New(cfg, &fakeExecutor{}, func() pyexec.Status { return pyexec.Status{} }, zap.NewNop())
		assert.Error(t, err, name)
	}
}

func TestExecute_PassesArgs(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	a := do(t, Config{}, exec, http.MethodPost, "/execute", `{"script": "s", "args": {"city": "Oslo", "n": 12345678901234567890, "o": {"k": [1, null]}}}`)
	assert.Equal(t, 200, a.Status)
	assert.JSONEq(t, `{"city": "Oslo", "n": 12345678901234567890, "o": {"k": [1, null]}}`, string(exec.got.Args))
	assert.Contains(t, string(exec.got.Args), "12345678901234567890", "numbers reach main as written")

	for _, body := range []string{`{"script": "s"}`, `{"script": "s", "args": null}`} {
		exec.got = pyexec.Request{}
		a = do(t, Config{}, exec, http.MethodPost, "/execute", body)
		assert.Equal(t, 200, a.Status, body)
		assert.Equal(t, "s", exec.got.Script, body)
		assert.Nil(t, exec.got.Args, "%s: main is called without arguments", body)
	}
	exec.got = pyexec.Request{}
	do(t, Config{}, exec, http.MethodPost, "/execute", `{"script": "s", "args": {}}`)
	assert.JSONEq(t, `{}`, string(exec.got.Args), "an empty object is args, checked against main")
}

func TestDecodeRequestKeepsItsOwnCopyOfTheArgs(t *testing.T) {
	s := &server{cfg: Config{MaxScriptBytes: 1024, DefaultTimeout: time.Second, MaxTimeout: time.Second}}
	require.NoError(t, s.cfg.check())
	buf := []byte(`{"script": "def main(a): return a", "args": {"a": 1}}`)
	req, err := s.decodeRequest(buf)
	require.NoError(t, err)
	copy(buf, bytes.Repeat([]byte("X"), len(buf)))
	assert.JSONEq(t, `{"a": 1}`, string(req.Args))
}
