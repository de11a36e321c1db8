package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

var filesConfig = Config{MaxInputFiles: 3, MaxInputBytes: 10}

func TestExecute_PassesInputFiles(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	a := do(t, filesConfig, exec, http.MethodPost, "/execute", `{"script": "s", "files": [
		{"path": "data/sales.csv", "content": "a,b\n"},
		{"path": "bin", "content": "AP8=", "encoding": "base64"},
		{"path": "t.txt", "content": "é", "encoding": "utf-8"}]}`)
	require.Equal(t, 200, a.Status, a.Body.Error)
	assert.Equal(t, []pyexec.File{
		{Path: "data/sales.csv", Content: []byte("a,b\n")},
		{Path: "bin", Content: []byte{0, 0xff}},
		{Path: "t.txt", Content: []byte("é")},
	}, exec.got.Files)

	for _, body := range []string{`{"script": "s"}`, `{"script": "s", "files": null}`, `{"script": "s", "files": []}`} {
		exec.got = pyexec.Request{}
		a = do(t, filesConfig, exec, http.MethodPost, "/execute", body)
		assert.Equal(t, 200, a.Status, body)
		assert.Empty(t, exec.got.Files, body)
	}
}

func TestExecute_RefusesBadInputFiles(t *testing.T) {
	file := func(path string) string {
		p, _ := json.Marshal(path)
		return fmt.Sprintf(`{"path": %s, "content": ""}`, p)
	}
	for name, tc := range map[string]struct{ files, message string }{
		"parent":            {file("../etc/passwd"), `"../etc/passwd" has a ".." segment`},
		"parent inside":     {file("a/../../b"), `"a/../../b" has a ".." segment`},
		"absolute":          {file("/etc/passwd"), `"/etc/passwd" is absolute`},
		"dot":               {file("./a"), `"./a" has a "." segment`},
		"empty segment":     {file("a//b"), `"a//b" has an empty segment`},
		"trailing slash":    {file("a/"), `"a/" has an empty segment`},
		"empty":             {file(""), "file path is empty"},
		"backslash":         {file(`a\b`), `holds a NUL or a backslash`},
		"nul":               {file("a\x00b"), `holds a NUL or a backslash`},
		"long name":         {file(strings.Repeat("x", 256)), "has a name over 255 bytes"},
		"output":            {file("output"), `"output" is the directory for output files`},
		"twice":             {file("a") + "," + file("a"), `file path "a" is given twice`},
		"file and dir":      {file("d") + "," + file("d/x"), `file path "d" is also the directory of "d/x"`},
		"too many":          {file("a") + "," + file("b") + "," + file("c") + "," + file("d"), "4 input files, over the 3-file limit"},
		"too large":         {`{"path": "a", "content": "0123456789A"}`, "input files hold 11 bytes, over the 10-byte limit"},
		"too large in all":  {`{"path": "a", "content": "012345"}, {"path": "b", "content": "AAAAAAAA", "encoding": "base64"}`, "input files hold 12 bytes, over the 10-byte limit"},
		"bad base64":        {`{"path": "a", "content": "!!", "encoding": "base64"}`, `file "a": content is not base64`},
		"bad encoding":      {`{"path": "a", "content": "", "encoding": "latin-1"}`, `file "a": encoding must be "utf-8" or "base64"`},
		"not an object":     {`"a"`, `"files"[0] must be an object`},
		"null item":         {`null`, `"files"[0] must be an object`},
		"path not a string": {`{"path": 1, "content": ""}`, `"files"[0] must be an object`},
		"lone surrogate":    {`{"path": "a", "content": "\udc80"}`, "half of a surrogate pair"},
	} {
		exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
		a := do(t, filesConfig, exec, http.MethodPost, "/execute", `{"script": "s", "files": [`+tc.files+`]}`)
		assert.Equal(t, 400, a.Status, name)
		if assert.NotNil(t, a.Body.Error, name) {
			assert.Equal(t, pyexec.CodeInvalidRequest, a.Body.Error.Type, name)
			assert.Contains(t, a.Body.Error.Message, tc.message, name)
		}
		assert.Empty(t, exec.got.Script, "%s: refused before any worker", name)
	}
	a := do(t, filesConfig, &fakeExecutor{}, http.MethodPost, "/execute", `{"script": "s", "files": {"path": "a"}}`)
	assert.Equal(t, 400, a.Status)
	assert.Contains(t, a.Body.Error.Message, `"files" must be a list`)
	a = do(t, Config{}, &fakeExecutor{}, http.MethodPost, "/execute", `{"script": "s", "files": [{"path": "a", "content": ""}]}`)
	assert.Equal(t, 400, a.Status)
	assert.Contains(t, a.Body.Error.Message, "1 input files, over the 0-file limit", "a service configured for no input files takes none")
}

func TestExecute_ReturnsOutputFiles(t *testing.T) {
	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1"),
		Files: []pyexec.OutputFile{
			{Path: "summary.csv", MediaType: "text/csv", Content: []byte("a,b\n")},
			{Path: "img.png", MediaType: "image/png", Content: []byte{0x89, 'P', 0xff}},
		},
		FilesLeftOut:   []pyexec.LeftOutFile{{Path: "x", Reason: "a symbolic link: not followed"}},
		FilesTruncated: true,
	}}
	a := do(t, Config{}, exec, http.MethodPost, "/execute", `{"script": "s"}`)
	require.Equal(t, 200, a.Status)
	assert.JSONEq(t, `[
		{"path": "summary.csv", "size": 4, "media_type": "text/csv", "encoding": "utf-8", "content": "a,b\n"},
		{"path": "img.png", "size": 3, "media_type": "image/png", "encoding": "base64", "content": "iVD/"}]`, string(a.Raw["files"]))
	assert.JSONEq(t, `[{"path": "x", "reason": "a symbolic link: not followed"}]`, string(a.Raw["files_left_out"]))
	assert.True(t, a.Body.Meta.FilesTruncated)

	exec.resp = &pyexec.Response{Result: json.RawMessage("1")}
	a = do(t, Config{}, exec, http.MethodPost, "/execute", `{"script": "s"}`)
	assert.NotContains(t, a.Raw, "files", "no output files, no key")
	assert.NotContains(t, a.Raw, "files_left_out")
}

// The MCP tool's requests do not come as /execute's body: the same limits
// on input files are applied to them before they run.
func TestRunChecked_AppliesTheFileLimits(t *testing.T) {
	s := &server{cfg: Config{MaxScriptBytes: 1024, DefaultTimeout: time.Second, MaxTimeout: time.Second, MaxInputFiles: 1, MaxInputBytes: 10}}
	require.NoError(t, s.cfg.check())
	for _, files := range [][]pyexec.File{
		{{Path: "a"}, {Path: "b"}},
		{{Path: "a", Content: make([]byte, 11)}},
		{{Path: "../a"}},
	} {
		_, err := s.runChecked(context.Background(), pyexec.Request{Script: "s", Files: files})
		assert.Equal(t, pyexec.CodeInvalidRequest, pyexec.ErrorCode(err), "%v", files)
	}
}
