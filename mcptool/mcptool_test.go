package mcptool

import (
	"encoding/json"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	require.Len(t, res.Content, 1)
	return res.Content[0].(*mcp.TextContent).Text
}

func TestFormat_Success(t *testing.T) {
	res, out, err := Format(&pyexec.Response{Result: json.RawMessage(`{"n":12345678901234567890}`),
		Stdout: "a", Stderr: "warn\n", StdoutTruncated: true})
	require.NoError(t, err)
	assert.False(t, res.IsError)
	assert.Equal(t, "stdout:\na\n[stdout truncated at the output limit]\n\nstderr:\nwarn\n\nresult: {\"n\":12345678901234567890}\n", text(t, res))
	data, err := json.Marshal(out)
	require.NoError(t, err)
	assert.JSONEq(t, `{"result": {"n": 12345678901234567890}, "stdout": "a", "stderr": "warn\n", "stdout_truncated": true, "error": null}`, string(data))
	assert.Contains(t, string(data), "12345678901234567890", "a large integer is not rounded")
}

func TestFormat_NullResultAndNoOutput(t *testing.T) {
	res, out, err := Format(&pyexec.Response{Result: json.RawMessage(`null`)})
	require.NoError(t, err)
	assert.False(t, res.IsError)
	assert.Equal(t, "result: null\n", text(t, res))
	assert.Nil(t, out.Result)
}

func TestFormat_Error(t *testing.T) {
	res, out, err := Format(&pyexec.Response{Stdout: "x\n", Error: &pyexec.Error{Code: pyexec.CodeMemoryLimit, Message: "over 256 MB"}})
	require.NoError(t, err)
	assert.True(t, res.IsError)
	assert.Equal(t, "stdout:\nx\n\nerror: memory_limit: over 256 MB\n", text(t, res))
	require.NotNil(t, out.Error)
	assert.Equal(t, Error{Type: "memory_limit", Message: "over 256 MB"}, *out.Error)
}

func TestDescription_LeavesOutUnknownLimits(t *testing.T) {
	d := Description(pyexec.Limits{})
	assert.NotContains(t, d, "Limits:")
	assert.Contains(t, d, "def main():")
	d = Description(pyexec.Limits{MemoryMB: 64})
	assert.Contains(t, d, "Limits: 64 MB of memory.")
}

func TestDepth_CountsOnlyStructure(t *testing.T) {
	for text, want := range map[string]int{
		`1`:                      0,
		`{"a":[1,{"b":[]}]}`:     4,
		`{"a":"[[[{{\"\\"}"}`:    1,
		`["\\",["]"],{"k":"}"}]`: 2,
	} {
		assert.Equal(t, want, depth([]byte(text)), text)
	}
}

func TestFormat_FiguresAreImages(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake")
	res, out, err := Format(&pyexec.Response{Result: json.RawMessage(`1`), Figures: []pyexec.Figure{
		{PNG: png, Width: 640, Height: 480},
		{Width: 20000, Height: 20000, Omitted: "over the limit"},
	}})
	require.NoError(t, err)
	require.Len(t, res.Content, 2)
	assert.Equal(t, "figure 1: 640 x 480 PNG, an image of this result\nfigure 2: not drawn: over the limit\nresult: 1\n",
		res.Content[0].(*mcp.TextContent).Text)
	img := res.Content[1].(*mcp.ImageContent)
	assert.Equal(t, png, img.Data)
	assert.Equal(t, "image/png", img.MIMEType)
	data, err := json.Marshal(out)
	require.NoError(t, err)
	assert.JSONEq(t, `{"result": 1, "stdout": "", "stderr": "", "error": null, "figures": [
		{"media_type": "image/png", "width": 640, "height": 480},
		{"media_type": "image/png", "width": 20000, "height": 20000, "omitted": "over the limit"}]}`, string(data))
}
