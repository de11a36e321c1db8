package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeService answers /execute with a canned status and body and records
// what it was sent.
type fakeService struct {
	status int
	body   string
	got    map[string]any
	auth   string
	ctype  string
}

func (f *fakeService) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.auth = r.Header.Get("Authorization")
		f.ctype = r.Header.Get("Content-Type")
		data, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(data, &f.got)
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, f.body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func runCLI(t *testing.T, stdin string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func writeScript(t *testing.T, text string) string {
	path := filepath.Join(t.TempDir(), "script.py")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

func TestCLI_ExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		code   int
		stdout string
		stderr string
	}{
		{"success prints stdout then the result", 200,
			`{"result": {"message": "success"}, "stdout": "hello from sandbox\n", "error": null}`,
			0, "hello from sandbox\n{\n  \"message\": \"success\"\n}\n", ""},
		{"runtime error is 1", 200,
			`{"result": null, "stdout": "before\n", "error": {"type": "runtime_error", "message": "ValueError: boom", "traceback": "Traceback...\n"}}`,
			1, "before\n", "runtime_error: ValueError: boom"},
		{"validation error is 1", 400,
			`{"result": null, "stdout": "", "error": {"type": "validation_error", "message": "script must define main()"}}`,
			1, "", "script must define main()"},
		{"timeout is 1", 200,
			`{"result": null, "stdout": "", "error": {"type": "timeout", "message": "script exceeded the 1s time limit"}}`,
			1, "", "timeout"},
		{"overloaded is 2", 503,
			`{"result": null, "stdout": "", "error": {"type": "overloaded", "message": "busy"}}`,
			2, "", "overloaded"},
		{"unauthorized is 2", 401,
			`{"result": null, "stdout": "", "error": {"type": "unauthorized", "message": "key"}}`,
			2, "", "unauthorized"},
		{"unsupported_media_type is 2", 415,
			`{"result": null, "stdout": "", "error": {"type": "unsupported_media_type", "message": "send JSON"}}`,
			2, "", "unsupported_media_type: send JSON"},
		{"request_timeout is 2", 408,
			`{"result": null, "stdout": "", "error": {"type": "request_timeout", "message": "slow"}}`,
			2, "", "request_timeout: slow"},
		{"non-JSON answer is 2", 502, `<html>bad gateway</html>`, 2, "", "not JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{status: tc.status, body: tc.body}
			url := f.start(t)
			code, out, errOut := runCLI(t, "", nil, "run", writeScript(t, "def main(): return 1\n"), "--url", url)
			assert.Equal(t, tc.code, code)
			assert.Equal(t, tc.stdout, out)
			assert.Contains(t, errOut, tc.stderr)
		})
	}
}

func TestCLI_ReadsStdinAndSendsTimeoutAndKey(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": 1, "stdout": "", "error": null}`}
	url := f.start(t)
	code, out, _ := runCLI(t, "def main():\n    return 1\n", map[string]string{"PYEXEC_API_KEY": "k3y"},
		"run", "--timeout", "2.5", "--url", url, "-")
	assert.Equal(t, 0, code)
	assert.Equal(t, "1\n", out)
	assert.Equal(t, "def main():\n    return 1\n", f.got["script"])
	assert.EqualValues(t, 2.5, f.got["timeout"])
	assert.Equal(t, "Bearer k3y", f.auth)
	assert.Equal(t, "application/json", f.ctype, "the service refuses any other media type")
}

func TestCLI_UsageAndConnectionErrorsAre2(t *testing.T) {
	code, _, errOut := runCLI(t, "", nil)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "usage")

	code, _, _ = runCLI(t, "", nil, "run")
	assert.Equal(t, 2, code)

	code, _, errOut = runCLI(t, "", nil, "run", "/nonexistent/script.py")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "read script")

	code, _, errOut = runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", "http://127.0.0.1:1")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "cannot reach the service")

	code, _, _ = runCLI(t, "", nil, "run", "--bogus", "x.py")
	assert.Equal(t, 2, code)
}

func TestCLI_ResultIsOnALineOfItsOwn(t *testing.T) {
	for _, tc := range []struct {
		name, stdout, want string
	}{
		{"stdout without a final newline", "partial", "partial\n5\n"},
		{"stdout with one", "partial\n", "partial\n5\n"},
		{"no stdout", "", "5\n"},
		{"only a newline", "\n", "\n5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"result": 5, "stdout": tc.stdout, "stderr": "", "error": nil})
			require.NoError(t, err)
			url := (&fakeService{status: 200, body: string(body)}).start(t)
			code, out, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url)
			assert.Equal(t, 0, code, errOut)
			assert.Equal(t, tc.want, out)
			assert.Empty(t, errOut)
		})
	}
}

func TestCLI_SaysWhatTheServiceTruncated(t *testing.T) {
	for _, tc := range []struct {
		name           string
		stdout, stderr bool
		body           string
	}{
		{"neither", false, false, `{"result": 1, "stdout": "o\n", "stderr": "e\n", "error": null}`},
		{"stdout", true, false, `{"result": 1, "stdout": "o", "stderr": "e\n", "error": null, "meta": {"stdout_truncated": true, "stderr_truncated": false}}`},
		{"stderr", false, true, `{"result": 1, "stdout": "o\n", "stderr": "e", "error": null, "meta": {"stdout_truncated": false, "stderr_truncated": true}}`},
		{"both, with an error", true, true, `{"result": null, "stdout": "o", "stderr": "e", "error": {"type": "runtime_error", "message": "boom"}, "meta": {"stdout_truncated": true, "stderr_truncated": true}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := (&fakeService{status: 200, body: tc.body}).start(t)
			_, _, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url)
			assert.Equal(t, tc.stdout, strings.Contains(errOut, "truncated the script's stdout"), "%s", errOut)
			assert.Equal(t, tc.stderr, strings.Contains(errOut, "truncated the script's stderr"), "%s", errOut)
			assert.True(t, strings.HasPrefix(errOut, "e\n"), "notes start on a line of their own: %q", errOut)
		})
	}
}

func TestCLI_HelpExits0OnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"run", "--help"}, {"run", "x.py", "-h"}} {
		code, out, errOut := runCLI(t, "", nil, args...)
		assert.Equal(t, 0, code, "%v", args)
		assert.Contains(t, out, "usage: pyexec run", "%v", args)
		assert.Contains(t, out, "PYEXEC_URL", "%v", args)
		assert.Empty(t, errOut, "%v", args)
	}
}

func TestCLI_RefusesATimeoutOutOfRange(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": 1, "stdout": "", "error": null}`}
	url := f.start(t)
	for _, v := range []string{"-1", "0", "-0", "1e-12", "NaN", "Inf", "1e300", "soon"} {
		code, out, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url, "--timeout", v)
		assert.Equal(t, 2, code, v)
		assert.Empty(t, out, v)
		assert.Contains(t, errOut, "more than 0", v)
	}
	assert.Nil(t, f.got, "nothing was sent")

	code, _, _ := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url, "--timeout", "0.5")
	assert.Equal(t, 0, code)
	assert.EqualValues(t, 0.5, f.got["timeout"])
	f.got = nil
	code, _, _ = runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url)
	assert.Equal(t, 0, code)
	assert.NotContains(t, f.got, "timeout", "left out, the service's default applies")
}

func TestCLI_UnknownCommandIs2(t *testing.T) {
	code, out, errOut := runCLI(t, "", nil, "exec", "x.py")
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, `unknown command "exec"`)
	assert.Contains(t, errOut, "usage")
}

func TestCLI_URLFromTheEnvironment(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": 1, "stdout": "", "error": null}`}
	url := f.start(t)
	code, out, errOut := runCLI(t, "", map[string]string{"PYEXEC_URL": url}, "run", writeScript(t, "x"))
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "1\n", out)
	assert.Equal(t, "x", f.got["script"])

	// --url wins over the environment.
	code, _, errOut = runCLI(t, "", map[string]string{"PYEXEC_URL": "http://127.0.0.1:1"}, "run", writeScript(t, "x"), "--url", url)
	assert.Equal(t, 0, code, errOut)
}

func TestCLI_SendsArgs(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": "Oslo", "stdout": "", "error": null}`}
	url := f.start(t)
	code, out, _ := runCLI(t, "", nil, "run", writeScript(t, "def main(city):\n    return city\n"),
		"--url", url, "--args", `{"city": "Oslo", "n": 12345678901234567890}`)
	assert.Equal(t, 0, code)
	assert.Equal(t, "\"Oslo\"\n", out)
	require.Contains(t, f.got, "args")
	assert.Equal(t, "Oslo", f.got["args"].(map[string]any)["city"])

	f.got = nil
	code, _, _ = runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url)
	assert.Equal(t, 0, code)
	assert.NotContains(t, f.got, "args", "left out, main is called without arguments")
}

func TestCLI_RefusesArgsThatAreNotAJSONObject(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": 1, "stdout": "", "error": null}`}
	url := f.start(t)
	for _, v := range []string{"", "{", `{"city": }`, "[1]", `"Oslo"`, "null", "1", "city=Oslo"} {
		code, out, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url, "--args", v)
		assert.Equal(t, 2, code, v)
		assert.Empty(t, out, v)
		assert.Contains(t, errOut, "must be a JSON object", v)
	}
	assert.Nil(t, f.got, "nothing was sent")
}

func TestCLI_SaysHowManyFiguresCameBack(t *testing.T) {
	body := `{"result": 1, "stdout": "", "stderr": "", "error": null, "figures": [
		{"media_type": "image/png", "width": 2, "height": 2, "data": "iVBORw0KGgo="},
		{"media_type": "image/png", "width": 20000, "height": 20000, "omitted": "too big"}]}`
	url := (&fakeService{status: 200, body: body}).start(t)
	code, out, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url)
	assert.Equal(t, 0, code)
	assert.Equal(t, "1\n", out)
	assert.Equal(t, "pyexec: 1 figure(s) came back as PNG (--out DIR saves them); 1 more not drawn (over a limit)\n", errOut)

	// With --out, the drawn ones are written there, numbered in order.
	dir := filepath.Join(t.TempDir(), "out")
	code, _, errOut = runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url, "--out", dir)
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "figure 2 not drawn: too big")
	assert.Contains(t, errOut, "wrote 1 figures to "+dir)
	png, err := os.ReadFile(filepath.Join(dir, "figure-1.png"))
	require.NoError(t, err)
	assert.Equal(t, []byte("\x89PNG\r\n\x1a\n"), png)
	assert.NoFileExists(t, filepath.Join(dir, "figure-2.png"))

	url = (&fakeService{status: 200, body: `{"result": 1, "stdout": "", "stderr": "", "error": null}`}).start(t)
	_, _, errOut = runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url)
	assert.NotContains(t, errOut, "figure")
}
