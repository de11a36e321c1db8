package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/mcptest"
	"github.com/pyexec/pyexec/mcptool"
)

// readmeScript is the script of the README's first /execute example.
const readmeScript = "def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}"

// syncExecutor is fakeExecutor for calls that arrive on the server's
// goroutines while the test reads what they recorded.
type syncExecutor struct {
	mu   sync.Mutex
	resp *pyexec.Response
	err  error
	got  []pyexec.Request
}

func (f *syncExecutor) Execute(_ context.Context, req pyexec.Request) (*pyexec.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	return f.resp, f.err
}

func (f *syncExecutor) calls() []pyexec.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pyexec.Request(nil), f.got...)
}

// testLimits are what the fake /health reports, to find in the tool's
// description.
var testLimits = pyexec.Limits{MemoryMB: 256, TmpfsMB: 64, TimeoutDefault: 5, TimeoutMax: 30,
	MaxScriptBytes: 200 << 10, MaxOutputBytes: 1 << 20}

// mcpService is the HTTP layer on a real loopback listener, for the SDK's
// client to reach over HTTP.
func mcpService(t *testing.T, cfg Config, exec pyexec.Executor) *listening {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	app := newApp(t, cfg, exec, func() pyexec.Status { return pyexec.Status{Ready: true, Limits: testLimits} }, zap.New(core))
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

// bearer adds an API key to every request.
type bearer struct{ key string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// connectMCP opens an MCP session on l's /mcp with the SDK's client,
// sending key when it is set.
func connectMCP(t *testing.T, l *listening, key string) (*mcp.ClientSession, error) {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	if key != "" {
		hc.Transport = bearer{key}
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + l.addr + "/mcp", HTTPClient: hc, MaxRetries: -1}, nil)
	if err == nil {
		t.Cleanup(func() { assert.NoError(t, cs.Close()) })
	}
	return cs, err
}

func callRunPython(t *testing.T, cs *mcp.ClientSession, args map[string]any) (*mcp.CallToolResult, mcptool.Output) {
	t.Helper()
	return mcptest.Call(t, cs, args, 30*time.Second)
}

func resultText(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	require.Len(t, res.Content, 1)
	text, ok := res.Content[0].(*mcp.TextContent)
	require.True(t, ok, "content is %T", res.Content[0])
	return text.Text
}

func TestMCP_ListsRunPythonWithTheLimits(t *testing.T) {
	l := mcpService(t, Config{}, &syncExecutor{})
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)
	tools, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	require.Len(t, tools.Tools, 1)
	tool := tools.Tools[0]
	assert.Equal(t, "run_python", tool.Name)
	for _, want := range []string{"def main():", "numpy", "pandas", "no network", "/tmp",
		"5 s by default", "30 s", "256 MB of memory", "204800 bytes", "1048576 bytes"} {
		assert.Contains(t, tool.Description, want)
	}
	schema, err := json.Marshal(tool.InputSchema)
	require.NoError(t, err)
	assert.Contains(t, string(schema), `"maximum":30`, "the timeout's bound is the service's")
	assert.NotNil(t, tool.OutputSchema)
}

func TestMCP_RunsTheREADMEExample(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`{"message":"success"}`), Stdout: "hello from sandbox\n"}}
	l := mcpService(t, Config{DefaultTimeout: 3 * time.Second}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)

	res, out := callRunPython(t, cs, map[string]any{"script": readmeScript})
	assert.False(t, res.IsError)
	assert.Equal(t, "stdout:\nhello from sandbox\n\nresult: {\"message\":\"success\"}\n", resultText(t, res))
	assert.Equal(t, map[string]any{"message": "success"}, out.Result)
	assert.Equal(t, "hello from sandbox\n", out.Stdout)
	assert.Nil(t, out.Error)

	got := exec.calls()
	require.Len(t, got, 1)
	assert.Equal(t, readmeScript, got[0].Script)
	assert.Equal(t, 3*time.Second, got[0].Timeout, "the service's default timeout")
	assert.NotEmpty(t, got[0].ID)

	// The call is counted and logged as a tool call, under the id of the
	// HTTP request that carried it; the script and its output are not.
	assert.Equal(t, 1.0, testutil.ToFloat64(l.metrics.toolCalls.WithLabelValues("ok")))
	calls := l.logs.FilterMessage("tool call").All()
	require.Len(t, calls, 1)
	f := calls[0].ContextMap()
	assert.Equal(t, got[0].ID, f["request_id"])
	assert.Equal(t, "/mcp", f["path"])
	assert.Equal(t, "run_python", f["tool"])
	assert.Equal(t, "ok", f["outcome"])
	l.requireServed(t, got[0].ID, 200, "ok", http.MethodPost, "/mcp")
	for _, e := range l.logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		assert.NotContains(t, string(line), "hello from sandbox")
	}
}

func TestMCP_RuntimeErrorIsAToolError(t *testing.T) {
	tb := "Traceback (most recent call last):\n  File \"<script>\", line 2, in main\nZeroDivisionError: division by zero\n"
	exec := &syncExecutor{resp: &pyexec.Response{Stdout: "before\n",
		Error: &pyexec.Error{Code: pyexec.CodeRuntime, Message: "ZeroDivisionError: division by zero", Traceback: tb}}}
	l := mcpService(t, Config{}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)

	res, out := callRunPython(t, cs, map[string]any{"script": "def main():\n    return 1/0"})
	assert.True(t, res.IsError)
	assert.Equal(t, "stdout:\nbefore\n\nerror: runtime_error: ZeroDivisionError: division by zero\n"+tb, resultText(t, res))
	require.NotNil(t, out.Error)
	assert.Equal(t, "runtime_error", out.Error.Type)
	assert.Equal(t, tb, out.Error.Traceback)
	assert.Nil(t, out.Result)
	assert.Equal(t, "before\n", out.Stdout)
	assert.Equal(t, 1.0, testutil.ToFloat64(l.metrics.toolCalls.WithLabelValues("runtime_error")))
}

func TestMCP_Timeout(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Error: &pyexec.Error{Code: pyexec.CodeTimeout, Message: "script exceeded the 0.5 s timeout"}}}
	l := mcpService(t, Config{}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)

	res, out := callRunPython(t, cs, map[string]any{"script": "import time\ndef main():\n    time.sleep(9)", "timeout": 0.5})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "timeout", out.Error.Type)
	assert.Contains(t, resultText(t, res), "error: timeout: script exceeded")
	got := exec.calls()
	require.Len(t, got, 1)
	assert.Equal(t, 500*time.Millisecond, got[0].Timeout, "the tool's timeout argument reaches the executor")

	// A timeout over the service's maximum is refused before anything
	// runs, as a result the model reads.
	res, _ = callRunPython(t, cs, map[string]any{"script": "x", "timeout": 31})
	assert.True(t, res.IsError)
	assert.Contains(t, resultText(t, res), "timeout")
	assert.Len(t, exec.calls(), 1, "nothing ran")
}

func TestMCP_ChecksAreThoseOfExecute(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`1`)}}
	l := mcpService(t, Config{MaxScriptBytes: 10}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)
	res, out := callRunPython(t, cs, map[string]any{"script": "def main():\n    return 1"})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "validation_error", out.Error.Type)
	assert.Equal(t, "script is 24 bytes, over the 10-byte limit", out.Error.Message)
	assert.Empty(t, exec.calls())
}

func TestMCP_OverloadedIsAToolError(t *testing.T) {
	exec := &syncExecutor{err: pyexec.Errorf(pyexec.CodeOverloaded, "no worker became free within 10s")}
	l := mcpService(t, Config{}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)
	res, out := callRunPython(t, cs, map[string]any{"script": "def main():\n    return 1"})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "overloaded", out.Error.Type)
	assert.Equal(t, 1.0, testutil.ToFloat64(l.metrics.toolCalls.WithLabelValues("overloaded")))
}

func TestMCP_NeedsTheAPIKey(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`1`)}}
	l := mcpService(t, Config{APIKey: "sekrit"}, exec)

	_, err := connectMCP(t, l, "")
	require.Error(t, err, "a client without the key is refused")
	_, err = connectMCP(t, l, "wrong")
	require.Error(t, err, "a client with another key is refused")
	assert.Empty(t, exec.calls())

	cs, err := connectMCP(t, l, "sekrit")
	require.NoError(t, err)
	res, _ := callRunPython(t, cs, map[string]any{"script": "def main():\n    return 1"})
	assert.False(t, res.IsError)
	assert.Len(t, exec.calls(), 1)
}

func TestMCP_ShareTheRateLimitOfExecute(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`1`)}}
	l := mcpService(t, Config{RateLimit: 1}, exec)
	res, err := http.Post("http://"+l.addr+"/execute", "application/json", strings.NewReader(okScript))
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, 200, res.StatusCode)
	_, err = connectMCP(t, l, "")
	require.Error(t, err, "the client's budget is spent")
}

func TestMCP_TransportAnswers(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`{"message":"success"}`), Stdout: "hello from sandbox\n"}}
	l := mcpService(t, Config{}, exec)
	var body []byte
	send := func(method, ctype, payload string) *http.Response {
		req, err := http.NewRequest(method, "http://"+l.addr+"/mcp", strings.NewReader(payload))
		require.NoError(t, err)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Accept", "application/json, text/event-stream")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err = io.ReadAll(res.Body)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		return res
	}
	// Stateless: no stream to open, no session to end. The SDK answers
	// these itself; the log names them by their status, not "ok".
	res := send(http.MethodGet, "", "")
	assert.Equal(t, 405, res.StatusCode)
	l.requestLine(t, res.Header.Get("X-Request-ID"), 405, "method_not_allowed")
	assert.Equal(t, 405, send(http.MethodDelete, "", "").StatusCode)
	res = send(http.MethodPost, "application/json", `{"jsonrpc":"2.0","id":1,"method":`)
	assert.Equal(t, 400, res.StatusCode)
	l.requestLine(t, res.Header.Get("X-Request-ID"), 400, "invalid_request")
	// A POST is held to the media type rules of /execute.
	res = send(http.MethodPost, "text/plain", `{}`)
	assert.Equal(t, 415, res.StatusCode)
	assert.NotEmpty(t, res.Header.Get("X-Request-ID"))
	// One request, answered in JSON rather than as an event stream.
	res = send(http.MethodPost, "application/json",
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}`)
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
	assert.Empty(t, res.Header.Get("Mcp-Session-Id"))
	// With no session, a tools/call needs no initialize before it: the
	// README's curl example.
	res = send(http.MethodPost, "application/json",
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}"}}}`)
	assert.Equal(t, 200, res.StatusCode)
	var rpc struct {
		Result struct {
			IsError           bool              `json:"isError"`
			StructuredContent mcptool.Output    `json:"structuredContent"`
			Content           []mcp.TextContent `json:"content"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(body, &rpc), "%s", body)
	assert.False(t, rpc.Result.IsError)
	assert.Equal(t, map[string]any{"message": "success"}, rpc.Result.StructuredContent.Result)
	require.Len(t, exec.calls(), 1)
	assert.Equal(t, readmeScript, exec.calls()[0].Script)
}

// endingExecutor blocks until its context ends and reports why.
type endingExecutor struct {
	started chan struct{}
	ended   chan error
}

func (e *endingExecutor) Execute(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
	close(e.started)
	<-ctx.Done()
	e.ended <- context.Cause(ctx)
	return nil, context.Cause(ctx)
}

func TestMCP_ClientThatGoesAwayCancelsTheRun(t *testing.T) {
	exec := &endingExecutor{started: make(chan struct{}), ended: make(chan error, 1)}
	l := mcpService(t, Config{}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-exec.started
		cancel()
	}()
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: mcptool.ToolName, Arguments: map[string]any{"script": "x"}})
	require.Error(t, err)
	select {
	case cause := <-exec.ended:
		assert.ErrorIs(t, cause, errClientGone)
	case <-time.After(10 * time.Second):
		t.Fatal("the run went on after its client left")
	}
}

func TestMCP_CutOffByShutdownIsOverloaded(t *testing.T) {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	exec := &blockingExecutor{started: make(chan struct{})}
	go func() {
		<-exec.started
		cancel()
	}()
	l := mcpService(t, Config{BaseContext: base}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)
	res, out := callRunPython(t, cs, map[string]any{"script": "x"})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "overloaded", out.Error.Type)
	assert.Equal(t, "the service is shutting down", out.Error.Message)
}

func TestMCP_RefusesBatches(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`1`)}}
	l := mcpService(t, Config{RateLimit: 2}, exec)
	call := func(id int) string {
		return `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main():\n    return 1"}}}`
	}
	var batch []string
	for i := range 5 {
		batch = append(batch, call(i))
	}
	// No protocol version header: the SDK takes the request for one of
	// 2025-03-26, whose batches it would run.
	status, body := postMCP(t, l, " \n["+strings.Join(batch, ",")+"]")
	assert.Equal(t, 400, status, "%s", body)
	assert.Contains(t, string(body), "invalid_request")
	assert.Empty(t, exec.calls(), "one HTTP request, counted once by the rate limiter, ran several scripts")
}

// The structured result is main()'s return value as /execute answers it:
// an integer past float64's precision is not rounded on the way.
func TestMCP_LargeIntegersAreNotRounded(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`{"id":9007199254740993,"big":1180591620717411303424}`)}}
	l := mcpService(t, Config{}, exec)
	status, body := postMCP(t, l,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main():\n    return 1"}}}`)
	require.Equal(t, 200, status, "%s", body)
	var rpc struct {
		Result struct {
			StructuredContent map[string]json.RawMessage `json:"structuredContent"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(body, &rpc), "%s", body)
	assert.Contains(t, string(rpc.Result.StructuredContent["result"]), "9007199254740993")
	assert.Contains(t, string(rpc.Result.StructuredContent["result"]), "1180591620717411303424")
}

// A subscriptions/listen (protocol 2026-07-28) parks until the client
// leaves when the server has a list that can change: on a stateless
// service whose one tool never changes, it must answer at once, not hold
// a connection and a goroutine for as long as the client likes.
func TestMCP_SubscriptionsListenDoesNotHoldTheRequest(t *testing.T) {
	l := mcpService(t, Config{}, &syncExecutor{})
	const v = "2026-07-28"
	status, body := postMCP(t, l,
		`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"promptsListChanged":true,"resourcesListChanged":true},`+
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"`+v+`","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"0"}}}}`,
		"Mcp-Protocol-Version", v, "Mcp-Method", "subscriptions/listen")
	assert.Equal(t, 200, status, "%s", body)
	assert.NotContains(t, string(body), `"toolsListChanged":true`, "nothing to notify is acknowledged: %s", body)
}

// A result nested deeper than the SDK's clients read (1000 levels) would
// make the answer unreadable to them and end their session: it is a tool
// error instead, and the session goes on.
func TestMCP_DeeplyNestedResultDoesNotEndTheSession(t *testing.T) {
	deep := strings.Repeat("[", 1500) + "1" + strings.Repeat("]", 1500)
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(deep), Stdout: "printed\n"}}
	l := mcpService(t, Config{}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)
	res, out := callRunPython(t, cs, map[string]any{"script": "x"})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "invalid_result", out.Error.Type)
	assert.Equal(t, "printed\n", out.Stdout)

	exec.mu.Lock()
	exec.resp = &pyexec.Response{Result: json.RawMessage(strings.Repeat("[", 900) + "1" + strings.Repeat("]", 900))}
	exec.mu.Unlock()
	res, out = callRunPython(t, cs, map[string]any{"script": "x"})
	assert.False(t, res.IsError, "a result nested 900 levels reaches the client")
	assert.NotNil(t, out.Result)
}

// postMCP sends one raw POST to /mcp, with the headers a streamable HTTP
// client sends and any extra given as name, value pairs, and returns the
// status and the body.
func postMCP(t *testing.T, l *listening, body string, headers ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+l.addr+"/mcp", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	res, err := hc.Do(req)
	require.NoError(t, err, "no answer within 5 s")
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	return res.StatusCode, data
}

func TestMCP_PassesArgs(t *testing.T) {
	exec := &syncExecutor{resp: &pyexec.Response{Result: json.RawMessage(`"Oslo"`)}}
	l := mcpService(t, Config{}, exec)
	cs, err := connectMCP(t, l, "")
	require.NoError(t, err)
	tools, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	require.Len(t, tools.Tools, 1)
	data, err := json.Marshal(tools.Tools[0].InputSchema)
	require.NoError(t, err)
	var schema struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	require.NoError(t, json.Unmarshal(data, &schema))
	assert.Equal(t, []any{"null", "object"}, schema.Properties["args"].Type)
	assert.NotContains(t, schema.Required, "args", "args is optional")
	assert.Contains(t, tools.Tools[0].Description, "keyword arguments")

	res, out := callRunPython(t, cs, map[string]any{"script": "def main(city):\n    return city",
		"args": map[string]any{"city": "Oslo", "days": json.Number("12345678901234567890")}})
	assert.False(t, res.IsError)
	assert.Equal(t, "Oslo", out.Result)
	res, _ = callRunPython(t, cs, map[string]any{"script": "def main():\n    return 1"})
	assert.False(t, res.IsError)
	got := exec.calls()
	require.Len(t, got, 2)
	assert.JSONEq(t, `{"city":"Oslo","days":12345678901234567890}`, string(got[0].Args))
	assert.Contains(t, string(got[0].Args), "12345678901234567890", "numbers reach main as written")
	assert.Nil(t, got[1].Args, "no args: main is called without arguments")
}
