package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

// fake answers every request with a canned status, headers and body, and
// records the last request it was sent.
type fake struct {
	status  int
	header  map[string]string
	body    string
	got     *http.Request
	gotBody map[string]any
}

func (f *fake) start(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.got = r
		data, _ := io.ReadAll(r.Body)
		f.gotBody = nil
		_ = json.Unmarshal(data, &f.gotBody)
		for k, v := range f.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, f.body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

const okBody = `{"result": {"a": 1}, "stdout": "out", "stderr": "err", "error": null,
	"meta": {"request_id": "r1", "duration_ms": 2.5, "queue_ms": 0.5, "stdout_truncated": true, "stderr_truncated": false}}`

func TestExecute_ScriptOutcomes(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		check   func(t *testing.T, a *Answer)
		errCode pyexec.Code
	}{
		{name: "success", status: 200, body: okBody, check: func(t *testing.T, a *Answer) {
			assert.Nil(t, a.Error)
			assert.JSONEq(t, `{"a": 1}`, string(a.Result))
			assert.Equal(t, "out", a.Stdout)
			assert.Equal(t, "err", a.Stderr)
			assert.True(t, a.StdoutTruncated)
			assert.False(t, a.StderrTruncated)
			assert.Equal(t, 2500*time.Microsecond, a.Duration)
			assert.Equal(t, 500*time.Microsecond, a.QueueWait)
		}},
		{name: "success without meta", status: 200, body: `{"result": null, "stdout": "", "error": null}`, check: func(t *testing.T, a *Answer) {
			assert.Nil(t, a.Error)
			assert.Equal(t, "null", string(a.Result))
		}},
		{name: "runtime error keeps stdout and traceback", status: 200, errCode: pyexec.CodeRuntime,
			body: `{"result": null, "stdout": "before", "stderr": "", "error": {"type": "runtime_error", "message": "ValueError: boom", "traceback": "Traceback..."}}`,
			check: func(t *testing.T, a *Answer) {
				assert.Nil(t, a.Result)
				assert.Equal(t, "before", a.Stdout)
				assert.Equal(t, "ValueError: boom", a.Error.Message)
				assert.Equal(t, "Traceback...", a.Error.Traceback)
			}},
		{name: "timeout", status: 200, errCode: pyexec.CodeTimeout,
			body: `{"result": null, "stdout": "", "stderr": "", "error": {"type": "timeout", "message": "script exceeded the 1s time limit"}}`},
		{name: "a script refused before it ran is 400", status: 400, errCode: pyexec.CodeValidation,
			body: `{"result": null, "stdout": "", "stderr": "", "error": {"type": "validation_error", "message": "script must define main()"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fake{status: tc.status, body: tc.body, header: map[string]string{"X-Request-ID": "answered-id"}}
			c := &Client{BaseURL: f.start(t)}
			a, err := c.Execute(context.Background(), pyexec.Request{Script: "def main(): return 1"})
			require.NoError(t, err)
			assert.Equal(t, tc.status, a.Status)
			assert.Equal(t, "answered-id", a.RequestID)
			if tc.errCode != "" {
				require.NotNil(t, a.Error)
				assert.Equal(t, tc.errCode, a.Error.Code)
			}
			if tc.check != nil {
				tc.check(t, a)
			}
		})
	}
}

func TestExecute_AnswersThatAreNotAnOutcome(t *testing.T) {
	errBody := func(code string) string {
		return `{"result": null, "stdout": "", "stderr": "", "error": {"type": "` + code + `", "message": "m"}}`
	}
	cases := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		code       pyexec.Code
		retryAfter time.Duration
		notOurs    bool
	}{
		{name: "invalid request", status: 400, body: errBody("invalid_request"), code: pyexec.CodeInvalidRequest},
		{name: "unauthorized", status: 401, body: errBody("unauthorized"), code: pyexec.CodeUnauthorized},
		{name: "payload too large", status: 413, body: errBody("payload_too_large"), code: pyexec.CodePayloadTooLarge},
		{name: "rate limited", status: 429, header: map[string]string{"Retry-After": "60"}, body: errBody("rate_limited"),
			code: pyexec.CodeRateLimited, retryAfter: time.Minute},
		{name: "overloaded", status: 503, header: map[string]string{"Retry-After": "1"}, body: errBody("overloaded"),
			code: pyexec.CodeOverloaded, retryAfter: time.Second},
		{name: "internal error", status: 500, body: errBody("internal_error"), code: pyexec.CodeInternal},
		{name: "a script code with a status no script gets", status: 503, body: errBody("runtime_error"), code: pyexec.CodeRuntime},
		{name: "a platform code answered 200", status: 200, body: errBody("overloaded"), code: pyexec.CodeOverloaded},
		{name: "a proxy's page", status: 502, body: `<html>bad gateway</html>`, code: pyexec.CodeInternal, notOurs: true},
		{name: "an empty body", status: 502, body: ``, code: pyexec.CodeInternal, notOurs: true},
		{name: "cut short", status: 200, body: okBody[:40], code: pyexec.CodeInternal, notOurs: true},
		{name: "a JSON array", status: 200, body: `[1]`, code: pyexec.CodeInternal, notOurs: true},
		{name: "JSON null", status: 200, body: `null`, code: pyexec.CodeInternal, notOurs: true},
		{name: "an object without the envelope's keys", status: 200, body: `{}`, code: pyexec.CodeInternal, notOurs: true},
		{name: "another service's JSON error", status: 502, body: `{"message": "Bad Gateway"}`, code: pyexec.CodeInternal, notOurs: true},
		{name: "a refusal without an error", status: 503, body: `{"result": null, "stdout": "", "error": null}`, code: pyexec.CodeInternal, notOurs: true},
		{name: "an error without a type", status: 200, body: `{"result": null, "stdout": "", "error": {"message": "m"}}`, code: pyexec.CodeInternal, notOurs: true},
		{name: "an error with a result", status: 200, body: `{"result": 1, "stdout": "", "error": {"type": "runtime_error", "message": "m"}}`, code: pyexec.CodeInternal, notOurs: true},
		{name: "stdout of the wrong type", status: 200, body: `{"result": 1, "stdout": 5, "error": null}`, code: pyexec.CodeInternal, notOurs: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			header := map[string]string{"X-Request-ID": "answered-id"}
			for k, v := range tc.header {
				header[k] = v
			}
			f := &fake{status: tc.status, body: tc.body, header: header}
			c := &Client{BaseURL: f.start(t)}
			a, err := c.Execute(context.Background(), pyexec.Request{Script: "x"})
			require.Error(t, err)
			assert.Nil(t, a)
			var pe *pyexec.Error
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.code, pe.Code)
			assert.NotEmpty(t, pe.Message)
			var se *StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.status, se.Status)
			assert.Equal(t, "answered-id", se.RequestID)
			assert.Equal(t, tc.retryAfter, se.RetryAfter)
			assert.Equal(t, tc.notOurs, errors.Is(err, ErrNotEnvelope))
		})
	}
}

func TestExecute_SendsTheRequest(t *testing.T) {
	f := &fake{status: 200, body: okBody}
	c := &Client{BaseURL: f.start(t) + "/", APIKey: "k3y"}
	_, err := c.Execute(context.Background(), pyexec.Request{ID: "my-id", Script: "def main(): return 1", Timeout: 2500 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, http.MethodPost, f.got.Method)
	assert.Equal(t, "/execute", f.got.URL.Path, "one slash between the base URL and the path")
	assert.Equal(t, "application/json", f.got.Header.Get("Content-Type"), "the service refuses any other media type")
	assert.Equal(t, "Bearer k3y", f.got.Header.Get("Authorization"))
	assert.Equal(t, "my-id", f.got.Header.Get("X-Request-ID"))
	assert.Equal(t, map[string]any{"script": "def main(): return 1", "timeout": 2.5}, f.gotBody)

	c.APIKey = ""
	_, err = c.Execute(context.Background(), pyexec.Request{Script: "s"})
	require.NoError(t, err)
	assert.Empty(t, f.got.Header.Values("Authorization"), "no key, no header")
	assert.Empty(t, f.got.Header.Values("X-Request-ID"), "no id: the service makes one")
	assert.Equal(t, map[string]any{"script": "s"}, f.gotBody, "no timeout: the service's default")
}

func TestExecute_TransportErrorsAreNotAnswers(t *testing.T) {
	f := &fake{status: 200, body: okBody}
	base := f.start(t)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Client{BaseURL: base}).Execute(ctx, pyexec.Request{Script: "s"})
	require.ErrorIs(t, err, context.Canceled)
	var pe *pyexec.Error
	assert.False(t, errors.As(err, &pe), "no answer, so no code")

	srv := httptest.NewServer(http.NotFoundHandler())
	closed := srv.URL
	srv.Close()
	_, err = (&Client{BaseURL: closed}).Execute(context.Background(), pyexec.Request{Script: "s"})
	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	assert.False(t, errors.As(err, &pe))
}

func TestHealth_ReadsTheLimitsEvenWhenUnavailable(t *testing.T) {
	for _, status := range []int{200, 503} {
		f := &fake{status: status, body: `{"status": "x", "ready": true, "isolation": "fork",
			"limits": {"memory_mb": 256, "timeout_default_s": 5, "timeout_max_s": 30, "max_script_bytes": 1000}}`}
		st, err := (&Client{BaseURL: f.start(t)}).Health(context.Background())
		require.NoError(t, err)
		assert.Equal(t, "/health", f.got.URL.Path)
		assert.Equal(t, "fork", st.Isolation)
		assert.Equal(t, 256, st.Limits.MemoryMB)
		assert.Equal(t, 30.0, st.Limits.TimeoutMax)
	}
	f := &fake{status: 404, body: `{}`}
	_, err := (&Client{BaseURL: f.start(t)}).Health(context.Background())
	var se *StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 404, se.Status)
	f = &fake{status: 200, body: `<html>`}
	_, err = (&Client{BaseURL: f.start(t)}).Health(context.Background())
	assert.ErrorIs(t, err, ErrNotEnvelope)
}
