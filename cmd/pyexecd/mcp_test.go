package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/internal/mcptest"
	"github.com/pyexec/pyexec/jail"
	"github.com/pyexec/pyexec/mcptool"
)

// keyed adds the API key to every request of the MCP client.
type keyed struct{ key string }

func (k keyed) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+k.key)
	return http.DefaultTransport.RoundTrip(r)
}

func (s *service) connectMCP(key string) (*mcp.ClientSession, error) {
	hc := &http.Client{Timeout: time.Minute}
	if key != "" {
		hc.Transport = keyed{key}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "v0"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: s.base + "/mcp", HTTPClient: hc, MaxRetries: -1}, nil)
}

func callTool(t *testing.T, cs *mcp.ClientSession, args map[string]any) (*mcp.CallToolResult, string, mcptool.Output) {
	t.Helper()
	res, out := mcptest.Call(t, cs, args, time.Minute)
	return res, mcptest.OnlyText(t, res), out
}

// TestE2E_MCP drives /mcp of the real service, with the real jail, with
// the SDK's own client.
func TestE2E_MCP(t *testing.T) {
	s := startService(t, jail.IsolationFork, func(c *Config) {
		c.APIKey = "e2e-key"
		c.MemoryMB = 384
	})

	_, err := s.connectMCP("")
	require.Error(t, err, "a client without the key is refused")

	cs, err := s.connectMCP("e2e-key")
	require.NoError(t, err)
	defer func() { assert.NoError(t, cs.Close()) }()

	tools, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	require.Len(t, tools.Tools, 1)
	assert.Equal(t, "run_python", tools.Tools[0].Name)
	assert.Contains(t, tools.Tools[0].Description, "384 MB of memory", "the limits in force")
	assert.Contains(t, tools.Tools[0].Description, "timeout 5 s by default (the timeout argument may raise it to 30 s)")

	t.Run("the README example", func(t *testing.T) {
		res, text, out := callTool(t, cs, map[string]any{"script": "def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}"})
		assert.False(t, res.IsError)
		assert.Equal(t, "stdout:\nhello from sandbox\n\nresult: {\"message\": \"success\"}\n", text)
		assert.Equal(t, map[string]any{"message": "success"}, out.Result)
		assert.Equal(t, "hello from sandbox\n", out.Stdout)
		assert.Nil(t, out.Error)
	})
	t.Run("args", func(t *testing.T) {
		res, _, out := callTool(t, cs, map[string]any{"script": "def main(city, days=7):\n    return {'city': city, 'days': days}",
			"args": map[string]any{"city": "Oslo"}})
		assert.False(t, res.IsError)
		assert.Equal(t, map[string]any{"city": "Oslo", "days": 7.0}, out.Result)
		res, _, out = callTool(t, cs, map[string]any{"script": "def main(city):\n    return city",
			"args": map[string]any{"town": "Oslo"}})
		assert.True(t, res.IsError)
		require.NotNil(t, out.Error)
		assert.Equal(t, "validation_error", out.Error.Type)
		assert.Contains(t, out.Error.Message, "'town'")
	})
	t.Run("numpy and pandas", func(t *testing.T) {
		res, _, out := callTool(t, cs, map[string]any{"script": "import numpy as np, pandas as pd\ndef main():\n    return int(pd.Series(np.arange(5)).sum())"})
		assert.False(t, res.IsError)
		assert.EqualValues(t, 10, out.Result)
	})
	t.Run("a runtime error", func(t *testing.T) {
		res, text, out := callTool(t, cs, map[string]any{"script": "def main():\n    print('step 1')\n    raise ValueError('boom')\n"})
		assert.True(t, res.IsError)
		require.NotNil(t, out.Error)
		assert.Equal(t, "runtime_error", out.Error.Type)
		assert.Equal(t, "ValueError: boom", out.Error.Message)
		assert.Contains(t, out.Error.Traceback, "raise ValueError('boom')")
		assert.Equal(t, "step 1\n", out.Stdout)
		assert.Contains(t, text, "stdout:\nstep 1\n\nerror: runtime_error: ValueError: boom\nTraceback")
	})
	t.Run("a timeout", func(t *testing.T) {
		start := time.Now()
		res, _, out := callTool(t, cs, map[string]any{"script": "import time\ndef main():\n    time.sleep(30)\n", "timeout": 0.5})
		assert.True(t, res.IsError)
		require.NotNil(t, out.Error)
		assert.Equal(t, "timeout", out.Error.Type)
		assert.Less(t, time.Since(start), 10*time.Second)
	})

	metrics := scrapeMetrics(t, s.base)
	for outcome, n := range map[string]float64{"ok": 3, "runtime_error": 1, "timeout": 1, "validation_error": 1} {
		assert.EqualValues(t, n, metricValue(metrics, fmt.Sprintf(`pyexec_mcp_tool_calls_total{outcome=%q}`, outcome)), outcome)
	}
}
