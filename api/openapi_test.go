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
	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
)

// parseSpec loads an OpenAPI document and checks that it is valid.
func parseSpec(t *testing.T, data []byte) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context), "the OpenAPI document must itself be valid")
	return doc
}

// anyJSON is every JSON value, spelt as a list of types.
var anyJSON = openapi3.Types{"object", "array", "string", "number", "boolean", "null"}

// checkable is doc with the empty schema of a result spelt as anyJSON: the
// same values, but kin-openapi checks a 3.1 schema that has references by
// the rules of 3.0, under which a schema without a type refuses null.
func checkable(t *testing.T, doc *openapi3.T) *openapi3.T {
	t.Helper()
	result := doc.Components.Schemas["ExecuteResponse"].Value.Properties["result"].Value
	require.True(t, result.IsEmpty(), "result is any JSON value")
	result.Type = &anyJSON
	return doc
}

// servedSpec is the document app serves on /openapi.json: real answers are
// checked against what the instance that made them says of itself.
func servedSpec(t *testing.T, app *fiber.App) *openapi3.T {
	t.Helper()
	return checkable(t, parseSpec(t, servedBytes(t, app)))
}

func servedBytes(t *testing.T, app *fiber.App) []byte {
	t.Helper()
	res, err := app.Test(httptest.NewRequest(http.MethodGet, "/openapi.json", nil), -1)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return data
}

// TestOpenAPI_EveryErrorRowConforms sends requests producing every row of
// the error table and checks each real answer against the served document.
func TestOpenAPI_EveryErrorRowConforms(t *testing.T) {
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
		{"success with figures", &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage(`1`), Figures: []pyexec.Figure{
			{PNG: []byte("\x89PNG\r\n\x1a\n"), Width: 640, Height: 480},
			{Width: 20000, Height: 20000, Omitted: "over the pixel limit"},
		}}}, Config{}, "POST", "/execute", okScript, nil, 200, true},
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
			doc := servedSpec(t, app)
			router, err := gorillamux.NewRouter(doc)
			require.NoError(t, err)
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
				assert.NoError(t, doc.Components.Schemas["ErrorResponse"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()))
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
	l := listen(t, Config{ReadTimeout: 200 * time.Millisecond, BodyLimit: 1024}, &fakeExecutor{})
	doc := servedSpec(t, l.app)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	const head = "POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
	for _, tc := range []struct {
		name    string
		request string
		status  int
	}{
		{"request_timeout", head + "Content-Length: 100\r\n\r\n{", 408},
		{"payload_too_large", head + "Content-Length: 2048\r\n\r\n", 413},
		{"header_too_large", head + "X-Big: " + strings.Repeat("a", 8192) + "\r\n\r\n", 431},
		{"malformed", "POST\r\n\r\n", 400},
		// Not an early answer, but one only a loopback listener gives.
		{"forbidden", "POST /execute HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 403},
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

// TestOpenAPI_ServedDocumentDescribesTheInstance checks both variants: with
// an API key the embedded document as it is; without one, the operations
// that take the key declare no security and no 401, so a generated client
// needs no token, and nothing else changes.
func TestOpenAPI_ServedDocumentDescribesTheInstance(t *testing.T) {
	status := func() pyexec.Status { return pyexec.Status{Ready: true} }
	keyed := servedBytes(t, newApp(t, Config{APIKey: "k"}, &fakeExecutor{}, status, zap.NewNop()))
	assert.Equal(t, openAPIDocument, string(keyed))
	open := servedBytes(t, newApp(t, Config{}, &fakeExecutor{}, status, zap.NewNop()))
	assert.True(t, strings.HasPrefix(string(open), "{\n  \"openapi\": \"3.1.0\",\n  \"info\""), "the members keep their order:\n%.200s", open)

	var want, got map[string]any
	require.NoError(t, json.Unmarshal([]byte(openAPIDocument), &want))
	require.NoError(t, json.Unmarshal(open, &got))
	keyOps := 0
	for path, item := range want["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			op, ok := op.(map[string]any)
			if !ok {
				continue // summary, description
			}
			if sec := op["security"].([]any); len(sec) > 0 {
				assert.Equal(t, []any{map[string]any{"bearer": []any{}}}, sec, "%s %s", method, path)
				op["security"] = []any{}
				delete(op["responses"].(map[string]any), "401")
				keyOps++
			}
		}
	}
	assert.Equal(t, 2, keyOps, "POST /execute and POST /mcp take the key")
	delete(want["components"].(map[string]any), "securitySchemes")
	assert.Equal(t, want, got)

	// What a generated client meets: a request with no credential is
	// valid under the open document, not under the keyed one.
	for _, tc := range []struct {
		name  string
		doc   []byte
		valid bool
	}{{"keyed", keyed, false}, {"open", open, true}} {
		t.Run(tc.name, func(t *testing.T) {
			doc := parseSpec(t, tc.doc)
			router, err := gorillamux.NewRouter(doc)
			require.NoError(t, err)
			req := httptest.NewRequest(http.MethodPost, "http://localhost/execute", strings.NewReader(okScript))
			req.Header.Set("Content-Type", "application/json")
			route, params, err := router.FindRoute(req)
			require.NoError(t, err)
			err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
				Request: req, PathParams: params, Route: route,
			})
			if tc.valid {
				assert.NoError(t, err)
			} else {
				var se *openapi3filter.SecurityRequirementsError
				assert.ErrorAs(t, err, &se)
			}
		})
	}
}

func TestOpenAPI_EmbeddedDocumentIsValid(t *testing.T) {
	doc := parseSpec(t, []byte(openAPIDocument))
	assert.Equal(t, "3.1.0", doc.OpenAPI)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			assert.NotEmpty(t, op.OperationID, "%s %s", method, path)
			assert.NotNil(t, op.Security, "%s %s declares its security, open or not", method, path)
		}
	}
}
