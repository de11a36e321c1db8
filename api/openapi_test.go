package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData([]byte(openAPIDocument))
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context), "the served OpenAPI document must itself be valid")
	return doc
}

// TestOpenAPI_EveryErrorRowConforms sends requests producing every row of
// the error table and checks each real answer against the served document.
func TestOpenAPI_EveryErrorRowConforms(t *testing.T) {
	doc := loadSpec(t)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	ok := &pyexec.Response{Result: json.RawMessage(`{"message":"success"}`), Stdout: "hello from sandbox\n"}
	scriptErr := func(code pyexec.Code) *fakeExecutor {
		return &fakeExecutor{resp: &pyexec.Response{Error: &pyexec.Error{Code: code, Message: "m", Traceback: "tb"}}}
	}
	cases := []struct {
		name     string
		exec     *fakeExecutor
		cfg      Config
		method   string
		path     string
		body     string
		header   []string
		status   int
		routable bool
	}{
		{"success", &fakeExecutor{resp: ok}, Config{}, "POST", "/execute", okScript, nil, 200, true},
		{"invalid_request", &fakeExecutor{resp: ok}, Config{}, "POST", "/execute", `{"script": 1}`, nil, 400, true},
		{"validation_error", scriptErr(pyexec.CodeValidation), Config{}, "POST", "/execute", okScript, nil, 400, true},
		{"runtime_error", scriptErr(pyexec.CodeRuntime), Config{}, "POST", "/execute", okScript, nil, 200, true},
		{"invalid_result", scriptErr(pyexec.CodeInvalidResult), Config{}, "POST", "/execute", okScript, nil, 200, true},
		{"timeout", scriptErr(pyexec.CodeTimeout), Config{}, "POST", "/execute", okScript, nil, 200, true},
		{"memory_limit", scriptErr(pyexec.CodeMemoryLimit), Config{}, "POST", "/execute", okScript, nil, 200, true},
		{"output_limit", scriptErr(pyexec.CodeOutputLimit), Config{}, "POST", "/execute", okScript, nil, 200, true},
		{"sandbox_error", scriptErr(pyexec.CodeSandbox), Config{}, "POST", "/execute", okScript, nil, 200, true},
		{"unauthorized", &fakeExecutor{resp: ok}, Config{APIKey: "k"}, "POST", "/execute", okScript, nil, 401, true},
		{"overloaded", &fakeExecutor{err: pyexec.Errorf(pyexec.CodeOverloaded, "busy")}, Config{}, "POST", "/execute", okScript, nil, 503, true},
		{"unsupported_media_type", &fakeExecutor{resp: ok}, Config{}, "POST", "/execute", okScript, []string{"Content-Type", "text/plain"}, 415, true},
		{"internal_error", &fakeExecutor{err: errors.New("boom")}, Config{}, "POST", "/execute", okScript, nil, 500, true},
		{"not_found", &fakeExecutor{resp: ok}, Config{}, "GET", "/nope", "", nil, 404, false},
		{"method_not_allowed", &fakeExecutor{resp: ok}, Config{}, "GET", "/execute", "", nil, 405, false},
		{"health", &fakeExecutor{resp: ok}, Config{}, "GET", "/health", "", nil, 200, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := newApp(t, tc.cfg, tc.exec, func() pyexec.Status {
				return pyexec.Status{Ready: true, Limits: pyexec.Limits{Cgroup: "v1", MemoryEnforcer: "cgroup v1", PidsEnforcer: "cgroup v1"}}
			}, zap.NewNop())
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			res, err := app.Test(req, -1)
			require.NoError(t, err)
			body, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, res.StatusCode, "%s", body)

			if !tc.routable {
				// No operation to match: the body must still be an ErrorResponse.
				var v any
				require.NoError(t, json.Unmarshal(body, &v))
				assert.NoError(t, doc.Components.Schemas["ErrorResponse"].Value.VisitJSON(v))
				return
			}
			assertConforms(t, doc, router, tc.method, tc.path, res.StatusCode, res.Header, body)
		})
	}
}

// assertConforms checks an answer to method path against the document.
func assertConforms(t *testing.T, doc *openapi3.T, router routers.Router, method, path string, status int, header http.Header, body []byte) {
	t.Helper()
	vreq := httptest.NewRequest(method, "http://localhost"+path, nil)
	vreq.Header.Set("Content-Type", "application/json")
	route, params, err := router.FindRoute(vreq)
	require.NoError(t, err)
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true},
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                in.Options,
	})
	assert.NoError(t, err, "%s", body)
}

// TestOpenAPI_EarlyAnswersConform checks the rows of answers made while
// reading a request, which only a real listener produces.
func TestOpenAPI_EarlyAnswersConform(t *testing.T) {
	doc := loadSpec(t)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	l := listen(t, Config{ReadTimeout: 200 * time.Millisecond, BodyLimit: 1024}, &fakeExecutor{})
	const head = "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	for _, tc := range []struct {
		name    string
		request string
		status  int
	}{
		{"request_timeout", head + "Content-Length: 100\r\n\r\n{", 408},
		{"payload_too_large", head + "Content-Length: 2048\r\n\r\n", 413},
		{"header_too_large", head + "X-Big: " + strings.Repeat("a", 8192) + "\r\n\r\n", 431},
		{"malformed", "POST\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := l.dial(t)
			_, err = io.WriteString(conn, tc.request)
			require.NoError(t, err)
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, res.StatusCode, "%s", body)
			assertConforms(t, doc, router, "POST", "/execute", res.StatusCode, res.Header, body)
		})
	}
}

func TestOpenAPI_IsServed(t *testing.T) {
	app := newApp(t, Config{}, &fakeExecutor{}, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	res, err := app.Test(httptest.NewRequest(http.MethodGet, "/openapi.json", nil), -1)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Contains(t, res.Header.Get("Content-Type"), "application/json")
	var doc map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&doc))
	assert.Equal(t, "3.0.3", doc["openapi"])
}
