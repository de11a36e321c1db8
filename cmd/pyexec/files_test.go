package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCLI_SendsFiles(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": 1, "stdout": "", "error": null}`}
	url := f.start(t)
	dir := t.TempDir()
	csv := filepath.Join(dir, "sales.csv")
	require.NoError(t, os.WriteFile(csv, []byte("a,b\n"), 0o644))
	bin := filepath.Join(dir, "blob")
	require.NoError(t, os.WriteFile(bin, []byte{0, 0xff}, 0o644))
	code, _, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url,
		"--file", csv, "--file", bin+":data/blob.bin")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, []any{
		map[string]any{"path": "sales.csv", "encoding": "utf-8", "content": "a,b\n"},
		map[string]any{"path": "data/blob.bin", "encoding": "base64", "content": "AP8="},
	}, f.got["files"], "the base name by default, else the path given after ':'")
}

func TestCLI_RefusesBadFiles(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": 1, "stdout": "", "error": null}`}
	url := f.start(t)
	dir := t.TempDir()
	csv := filepath.Join(dir, "sales.csv")
	require.NoError(t, os.WriteFile(csv, []byte("a,b\n"), 0o644))
	for _, spec := range []string{csv + ":../x", csv + ":/etc/x", csv + ":", ":x", filepath.Join(dir, "missing.csv")} {
		code, out, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url, "--file", spec)
		assert.Equal(t, 2, code, spec)
		assert.Empty(t, out, spec)
		assert.NotEmpty(t, errOut, spec)
	}
	assert.Nil(t, f.got, "nothing was sent")
}

func TestCLI_WritesOutputFilesOnlyInsideOut(t *testing.T) {
	f := &fakeService{status: 200, body: `{"result": 1, "stdout": "", "error": null,
		"files": [{"path": "summary.csv", "size": 4, "media_type": "text/csv", "encoding": "utf-8", "content": "a,b\n"},
		          {"path": "img/x.png", "size": 2, "media_type": "image/png", "encoding": "base64", "content": "AP8="}],
		"files_left_out": [{"path": "link", "reason": "a symbolic link: not followed"}]}`}
	url := f.start(t)
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, errOut := runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url, "--out", out)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "1\n", stdout)
	assert.Contains(t, errOut, "output file link left out: a symbolic link: not followed")
	assert.Contains(t, errOut, "wrote 2 files to "+out)
	data, err := os.ReadFile(filepath.Join(out, "summary.csv"))
	require.NoError(t, err)
	assert.Equal(t, "a,b\n", string(data))
	data, err = os.ReadFile(filepath.Join(out, "img", "x.png"))
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0xff}, data)

	// Without --out, the files are only mentioned.
	code, _, errOut = runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url)
	assert.Equal(t, 0, code)
	assert.Contains(t, errOut, "left 2 files in output/ (--out DIR writes them)")

	// A path that would leave DIR, or a link in DIR that leads out of it,
	// writes nothing outside.
	outside := t.TempDir()
	for _, body := range []string{
		`{"result": 1, "stdout": "", "error": null, "files": [{"path": "../escaped", "size": 1, "media_type": "text/plain", "encoding": "utf-8", "content": "x"}]}`,
		`{"result": 1, "stdout": "", "error": null, "files": [{"path": "/tmp/escaped", "size": 1, "media_type": "text/plain", "encoding": "utf-8", "content": "x"}]}`,
		`{"result": 1, "stdout": "", "error": null, "files": [{"path": "via/escaped", "size": 1, "media_type": "text/plain", "encoding": "utf-8", "content": "x"}]}`,
	} {
		f.body = body
		dir := t.TempDir()
		require.NoError(t, os.Symlink(outside, filepath.Join(dir, "via")))
		code, _, errOut = runCLI(t, "", nil, "run", writeScript(t, "x"), "--url", url, "--out", dir)
		assert.Equal(t, 2, code, body)
		assert.Contains(t, errOut, "--out:", body)
		entries, err := os.ReadDir(outside)
		require.NoError(t, err)
		assert.Empty(t, entries, body)
		_, err = os.Stat(filepath.Join(filepath.Dir(dir), "escaped"))
		assert.True(t, os.IsNotExist(err), body)
	}
}
