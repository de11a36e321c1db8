package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
)

// corsHeaders are the Access-Control-* headers of an answer.
func corsHeaders(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			out[k] = v
		}
	}
	return out
}

func corsExchange(t *testing.T, cfg Config, origin string) (preflight, post *http.Response) {
	t.Helper()
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	app := newApp(t, cfg, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	req := httptest.NewRequest(http.MethodOptions, "/execute", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type,authorization")
	preflight, err := app.Test(req, -1)
	require.NoError(t, err)
	req = postJSON(okScript)
	req.Header.Set("Origin", origin)
	post, err = app.Test(req, -1)
	require.NoError(t, err)
	require.Equal(t, 200, post.StatusCode)
	return preflight, post
}

func TestCORS_OffByDefault(t *testing.T) {
	preflight, post := corsExchange(t, Config{}, "https://evil.example")
	assert.NotEqual(t, http.StatusNoContent, preflight.StatusCode)
	assert.Empty(t, corsHeaders(preflight.Header), "no CORS allowance without PYEXEC_CORS_ORIGINS")
	assert.Empty(t, corsHeaders(post.Header))
}

func TestCORS_OnlyTheListedOrigins(t *testing.T) {
	cfg := Config{CORSOrigins: []string{"https://app.example.com", "http://localhost:3000"}}

	preflight, post := corsExchange(t, cfg, "https://app.example.com")
	assert.Equal(t, http.StatusNoContent, preflight.StatusCode)
	assert.Equal(t, "https://app.example.com", preflight.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "GET,POST", preflight.Header.Get("Access-Control-Allow-Methods"))
	assert.Equal(t, "Content-Type,Authorization,X-Request-ID,Mcp-Protocol-Version,Mcp-Method,Mcp-Name", preflight.Header.Get("Access-Control-Allow-Headers"))
	assert.Empty(t, preflight.Header.Get("Access-Control-Allow-Credentials"))
	assert.Equal(t, "https://app.example.com", post.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "X-Request-ID", post.Header.Get("Access-Control-Expose-Headers"))
	assert.Contains(t, post.Header.Values("Vary"), "Origin")

	preflight, post = corsExchange(t, cfg, "http://localhost:3000")
	assert.Equal(t, "http://localhost:3000", preflight.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "http://localhost:3000", post.Header.Get("Access-Control-Allow-Origin"))

	for _, other := range []string{"https://evil.example", "https://app.example.com.evil.example", "http://app.example.com", "null"} {
		preflight, post = corsExchange(t, cfg, other)
		assert.NotEqual(t, http.StatusNoContent, preflight.StatusCode, other)
		assert.Empty(t, corsHeaders(preflight.Header), other)
		assert.Empty(t, corsHeaders(post.Header), other)
		assert.Contains(t, post.Header.Values("Vary"), "Origin", "a cache must not hand this answer to a listed origin")
	}
}

// A browser's MCP client sends MCP-Protocol-Version on every request after
// initialize (and the headers of later protocol versions): a preflight
// that does not allow them makes /mcp unusable from the listed origins.
func TestCORS_AllowsTheHeadersOfMCPClients(t *testing.T) {
	app := newApp(t, Config{CORSOrigins: []string{"https://app.example.com"}}, &fakeExecutor{},
		func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	req := httptest.NewRequest(http.MethodOptions, "/mcp", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,mcp-protocol-version")
	res, err := app.Test(req, -1)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, res.StatusCode)
	allowed := strings.Split(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), ",")
	for _, h := range []string{"authorization", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name"} {
		assert.Contains(t, allowed, h)
	}
}
