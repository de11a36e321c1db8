package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/api"
	"github.com/pyexec/pyexec/internal/mcptest"
	"github.com/pyexec/pyexec/mcptool"
)

// scriptedExecutor answers by what the script asks for, like a service
// would: 1/0 raises, sleep times out, anything else is the README example.
type scriptedExecutor struct{}

func (scriptedExecutor) Execute(_ context.Context, req pyexec.Request) (*pyexec.Response, error) {
	switch {
	case strings.Contains(req.Script, "1/0"):
		return &pyexec.Response{Stdout: "before\n", Error: &pyexec.Error{Code: pyexec.CodeRuntime,
			Message: "ZeroDivisionError: division by zero", Traceback: "Traceback (most recent call last):\nZeroDivisionError: division by zero\n"}}, nil
	case strings.Contains(req.Script, "sleep"):
		return &pyexec.Response{Error: &pyexec.Error{Code: pyexec.CodeTimeout,
			Message: "script exceeded the " + req.Timeout.String() + " timeout"}}, nil
	}
	return &pyexec.Response{Result: json.RawMessage(`{"message":"success"}`), Stdout: "hello from sandbox\n"}, nil
}

// startService serves the real HTTP layer, with a scripted executor, on
// a loopback port.
func startService(t *testing.T, key string) string {
	t.Helper()
	limits := pyexec.Limits{MemoryMB: 128, TimeoutDefault: 4, TimeoutMax: 20, MaxScriptBytes: 1000, MaxOutputBytes: 2000}
	app, err := api.New(api.Config{MaxScriptBytes: 1000, DefaultTimeout: 4 * time.Second, MaxTimeout: 20 * time.Second, APIKey: key},
		scriptedExecutor{}, func() pyexec.Status { return pyexec.Status{Ready: true, Limits: limits} }, zap.NewNop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, app.Shutdown())
		assert.NoError(t, <-served)
	})
	return "http://" + ln.Addr().String()
}

// startMCP runs "pyexec mcp --url URL" as a subprocess (this test binary,
// acting as the command) and connects the SDK's client to it.
func startMCP(t *testing.T, url, key string) *mcp.ClientSession {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(self, "mcp", "--url", url)
	cmd.Env = append(os.Environ(), "PYEXEC_TEST_AS_CLI=1", "PYEXEC_API_KEY="+key)
	cmd.Stderr = os.Stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Closing stdin ends the server; it must exit on its own, 0.
		assert.NoError(t, cs.Close())
		assert.Equal(t, 0, cmd.ProcessState.ExitCode())
	})
	return cs
}

func call(t *testing.T, cs *mcp.ClientSession, args map[string]any) (*mcp.CallToolResult, string, mcptool.Output) {
	t.Helper()
	res, out := mcptest.Call(t, cs, args, 30*time.Second)
	return res, mcptest.OnlyText(t, res), out
}

func TestMCP_StdioServerForwardsToTheService(t *testing.T) {
	cs := startMCP(t, startService(t, "k1"), "k1")

	tools, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	require.Len(t, tools.Tools, 1)
	assert.Equal(t, "run_python", tools.Tools[0].Name)
	assert.Contains(t, tools.Tools[0].Description, "timeout 4 s by default (the timeout argument may raise it to 20 s); 128 MB of memory",
		"the limits are read from the service's /health")

	res, text, out := call(t, cs, map[string]any{"script": "def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}"})
	assert.False(t, res.IsError)
	assert.Equal(t, "stdout:\nhello from sandbox\n\nresult: {\"message\":\"success\"}\n", text)
	assert.Equal(t, map[string]any{"message": "success"}, out.Result)

	res, text, out = call(t, cs, map[string]any{"script": "def main():\n    return 1/0"})
	assert.True(t, res.IsError)
	assert.Contains(t, text, "error: runtime_error: ZeroDivisionError: division by zero\nTraceback")
	require.NotNil(t, out.Error)
	assert.Equal(t, "runtime_error", out.Error.Type)
	assert.Equal(t, "before\n", out.Stdout)

	res, _, out = call(t, cs, map[string]any{"script": "import time\ndef main():\n    time.sleep(9)", "timeout": 1.5})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "timeout", out.Error.Type)
	assert.Equal(t, "script exceeded the 1.5s timeout", out.Error.Message, "the timeout reached the service")

	// The service's own checks apply, and come back as a tool error.
	res, _, out = call(t, cs, map[string]any{"script": strings.Repeat("#", 1001)})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "validation_error", out.Error.Type)
}

func TestMCP_StdioServerWithoutTheKeyIsRefused(t *testing.T) {
	cs := startMCP(t, startService(t, "k1"), "")
	res, text, out := call(t, cs, map[string]any{"script": "def main():\n    return 1"})
	assert.True(t, res.IsError)
	require.NotNil(t, out.Error)
	assert.Equal(t, "unauthorized", out.Error.Type)
	assert.Contains(t, text, "unauthorized")
}

func TestMCP_StdioServerWithNoServiceSaysSo(t *testing.T) {
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	cs := startMCP(t, url, "")
	res, text, _ := call(t, cs, map[string]any{"script": "def main():\n    return 1"})
	assert.True(t, res.IsError)
	assert.Contains(t, text, "could not be reached")
}

func TestMCP_StdioUsage(t *testing.T) {
	code, _, stderr := runCLI(t, "", nil, "mcp", "extra")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "usage: pyexec mcp")
	code, _, _ = runCLI(t, "", nil, "mcp", "--nope")
	assert.Equal(t, exitUsage, code)
}
