// Package mcptest calls the run_python tool through the MCP SDK's own
// client, for the tests of every package that serves it.
package mcptest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/mcptool"
)

// Call calls run_python with args, within timeout, and returns its result
// and its structured output (zero when it has none).
func Call(t testing.TB, cs *mcp.ClientSession, args map[string]any, timeout time.Duration) (*mcp.CallToolResult, mcptool.Output) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: mcptool.ToolName, Arguments: args})
	require.NoError(t, err)
	var out mcptool.Output
	if res.StructuredContent != nil {
		data, err := json.Marshal(res.StructuredContent)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &out))
	}
	return res, out
}

// OnlyText is the text of a result whose one content is a text block.
func OnlyText(t testing.TB, res *mcp.CallToolResult) string {
	t.Helper()
	require.Len(t, res.Content, 1)
	text, ok := res.Content[0].(*mcp.TextContent)
	require.True(t, ok, "content is %T", res.Content[0])
	return text.Text
}
