package mcptool

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

// recorder is a RunFunc that records what reaches it.
type recorder struct {
	mu  sync.Mutex
	got []pyexec.Request
}

func (r *recorder) run(_ context.Context, req pyexec.Request) (*pyexec.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, req)
	return &pyexec.Response{Result: json.RawMessage(`1`)}, nil
}

func (r *recorder) calls() []pyexec.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pyexec.Request(nil), r.got...)
}

// rawServer serves NewServer over newline-delimited JSON, as pyexec mcp
// does on stdio, and returns a function that sends one message as raw
// bytes (which a Go client could not produce: json.Marshal replaces what
// is not UTF-8) and returns the answer's result.
func rawServer(t *testing.T, limits pyexec.Limits, run RunFunc) func(line string) map[string]any {
	t.Helper()
	srv, err := NewServer(limits, run)
	require.NoError(t, err)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background(), &mcp.IOTransport{Reader: inR, Writer: outW}) }()
	t.Cleanup(func() {
		require.NoError(t, inW.Close())
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the server did not end with its input")
		}
		outR.Close()
	})
	answers := bufio.NewScanner(outR)
	answers.Buffer(nil, 1<<20)
	id := 0
	return func(line string) map[string]any {
		t.Helper()
		id++
		_, err := fmt.Fprintf(inW, `{"jsonrpc":"2.0","id":%d,%s}`+"\n", id, line)
		require.NoError(t, err)
		require.True(t, answers.Scan(), "no answer: %v", answers.Err())
		var msg struct {
			ID     int            `json:"id"`
			Result map[string]any `json:"result"`
		}
		require.NoError(t, json.Unmarshal(answers.Bytes(), &msg), "%s", answers.Bytes())
		require.Equal(t, id, msg.ID)
		require.NotNil(t, msg.Result, "%s", answers.Bytes())
		return msg.Result
	}
}

const initialize = `"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}`

func toolError(t *testing.T, res map[string]any) map[string]any {
	t.Helper()
	require.Equal(t, true, res["isError"], "%v", res)
	sc, ok := res["structuredContent"].(map[string]any)
	require.True(t, ok, "%v", res)
	e, ok := sc["error"].(map[string]any)
	require.True(t, ok, "%v", res)
	return e
}

// POST /execute refuses a script that is not text; the tool must not run
// the U+FFFD that the JSON decoder puts in its place.
func TestTool_RefusesAScriptThatIsNotText(t *testing.T) {
	rec := &recorder{}
	send := rawServer(t, pyexec.Limits{TimeoutMax: 30}, rec.run)
	send(initialize)
	for name, script := range map[string]string{
		"bytes that are not UTF-8": "\"def main():\\n    return '\xff\xfe'\"",
		"a lone surrogate":         `"def main():\n    return '\udc80'"`,
	} {
		res := send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":` + script + `}}`)
		e := toolError(t, res)
		assert.Equal(t, "invalid_request", e["type"], name)
	}
	assert.Empty(t, rec.calls(), "a script the client never sent ran")
	// A surrogate pair is a character.
	res := send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main():\n    return '\ud83d\ude00'"}}`)
	assert.Nil(t, res["isError"])
	require.Len(t, rec.calls(), 1)
	assert.Equal(t, "def main():\n    return '\U0001F600'", rec.calls()[0].Script)
}

// Without a maximum in the schema (pyexec mcp when the service's limits
// could not be read), a timeout too large for a time.Duration must reach
// the service as too large, not wrap around to the smallest one.
func TestTool_HugeTimeoutStaysHuge(t *testing.T) {
	rec := &recorder{}
	send := rawServer(t, pyexec.Limits{}, rec.run)
	send(initialize)
	send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1","timeout":1e300}}`)
	require.Len(t, rec.calls(), 1)
	assert.Greater(t, rec.calls()[0].Timeout, 1000*time.Hour)
}

// The args object reaches the run as the client wrote it: a large integer
// is not rounded on the way, and no args is none.
func TestTool_PassesArgsAsWritten(t *testing.T) {
	rec := &recorder{}
	send := rawServer(t, pyexec.Limits{}, rec.run)
	send(initialize)
	res := send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(n): return n","args":{"n":12345678901234567890}}}`)
	assert.Nil(t, res["isError"], "%v", res)
	send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1"}}`)
	res = send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1","args":{"s":"\udc80"}}}`)
	assert.Equal(t, "invalid_request", toolError(t, res)["type"])
	res = send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1","args":[1]}}`)
	assert.Equal(t, true, res["isError"], "args that are not an object are refused by the schema: %v", res)
	res = send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1","args":null}}`)
	assert.Nil(t, res["isError"], "null is no args, as on /execute: %v", res)
	calls := rec.calls()
	require.Len(t, calls, 3)
	assert.Nil(t, calls[2].Args)
	assert.JSONEq(t, `{"n":12345678901234567890}`, string(calls[0].Args))
	assert.Contains(t, string(calls[0].Args), "12345678901234567890")
	assert.Nil(t, calls[1].Args)
}
