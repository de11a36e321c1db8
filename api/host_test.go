package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

func TestLoopbackName(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST:8080": true, "127.0.0.1": true, "127.0.0.1:8080": true,
		"127.1.2.3:1": true, "[::1]": true, "[::1]:8080": true, "::1": true,
		"": false, "evil.example": false, "evil.example:8080": false, "localhost.evil.example": false,
		"127.0.0.1.nip.io": false, "10.0.0.1": false, "[::2]:80": false, "0.0.0.0": false,
	} {
		assert.Equal(t, want, loopbackName(host), "%q", host)
	}
}

// A request that reaches the service on a loopback address and names
// another host, as a page that rebinds its name to 127.0.0.1 would send, is
// refused on every route that runs scripts, before anything else is looked
// at; the names of the local machine are served.
func TestLoopbackHost_RefusesARebindingPage(t *testing.T) {
	exec := &countingExecutor{}
	l := listen(t, Config{}, exec)
	_, port, _ := strings.Cut(l.addr, ":")
	send := func(method, path, host string) (int, string) {
		conn := l.dial(t)
		body := `{"script": "def main(): return 1"}`
		if path == "/mcp" {
			body = `{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}`
		}
		_, err := io.WriteString(conn, method+" "+path+" HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/json\r\n"+
			"Accept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body)
		require.NoError(t, err)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(data)
	}
	for _, path := range []string{"/execute", "/mcp"} {
		for _, host := range []string{"evil.example", "evil.example:" + port, "localhost.evil.example:" + port} {
			status, body := send("POST", path, host)
			assert.Equal(t, http.StatusForbidden, status, "%s with Host %s: %s", path, host, body)
			assert.Contains(t, body, `"type":"forbidden"`, "%s with Host %s", path, host)
		}
		for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "localhost"} {
			status, body := send("POST", path, host)
			assert.Equal(t, http.StatusOK, status, "%s with Host %s: %s", path, host, body)
		}
	}
	assert.EqualValues(t, 3, exec.n.Load(), "only the three local names ran a script on /execute")
	// /health and the document stay open to any name.
	status, _ := send("GET", "/health", "evil.example")
	assert.Equal(t, http.StatusOK, status)
}

// countingExecutor answers every script with 1 and counts them.
type countingExecutor struct{ n atomic.Int64 }

func (e *countingExecutor) Execute(context.Context, pyexec.Request) (*pyexec.Response, error) {
	e.n.Add(1)
	return &pyexec.Response{Result: []byte("1")}, nil
}
