package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/jail"
	"github.com/pyexec/pyexec/mcptool"
)

// runRequest runs req and returns its status and outcome, a refusal as an
// outcome whose Error is the refusal.
func (s *service) runRequest(req pyexec.Request) (int, *pyexec.Response) {
	s.t.Helper()
	r := s.send(req)
	return r.Status, r.Body
}

func TestE2E_Files(t *testing.T) { inEveryMode(t, testE2EFiles) }

func testE2EFiles(t *testing.T, iso jail.Isolation) {
	// One worker, so in fork isolation every script runs in the same jail
	// as the one before it.
	s := startService(t, iso, func(c *Config) {
		c.PoolSize = 1
		c.MaxInputFiles = 3
		c.MaxInputBytes = 4 << 20
	})

	t.Run("the README example: args and a CSV in, a summary CSV out", func(t *testing.T) {
		body := `{
  "script": "import pandas as pd\ndef main(top):\n    df = pd.read_csv(\"data/sales.csv\")\n    s = df.groupby(\"city\")[\"amount\"].sum().nlargest(top)\n    s.to_csv(\"output/summary.csv\")\n    return s",
  "args": {"top": 2},
  "files": [{"path": "data/sales.csv", "content": "city,amount\nOslo,3\nBergen,5\nOslo,4\nTromsø,1\n"}]}`
		res, err := http.Post(s.base+"/execute", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer res.Body.Close()
		var raw map[string]json.RawMessage
		require.NoError(t, json.NewDecoder(res.Body).Decode(&raw))
		assert.Equal(t, 200, res.StatusCode)
		assert.JSONEq(t, `null`, string(raw["error"]))
		assert.JSONEq(t, `{"Oslo": 7, "Bergen": 5}`, string(raw["result"]))
		assert.JSONEq(t, `[{"path": "summary.csv", "size": 28, "media_type": "text/csv", "encoding": "utf-8",
			"content": "city,amount\nOslo,7\nBergen,5\n"}]`, string(raw["files"]))
		assert.NotContains(t, raw, "files_left_out")
	})

	t.Run("binary files in and out, byte for byte", func(t *testing.T) {
		data := make([]byte, 4<<20) // the whole input limit: the body and request-line limits have room for it
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		sum := sha256.Sum256(data)
		status, r := s.runRequest(pyexec.Request{
			Script: "import hashlib, shutil\ndef main():\n    b = open('in/blob.bin', 'rb').read()\n" +
				"    shutil.copy('in/blob.bin', 'output/copy.bin')\n    open('output/small.bin', 'wb').write(bytes([0, 255, 10]))\n" +
				"    return hashlib.sha256(b).hexdigest()\n",
			Files: []pyexec.File{{Path: "in/blob.bin", Content: data}},
		})
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `"`+hex.EncodeToString(sum[:])+`"`, string(r.Result))
		require.Len(t, r.Files, 2)
		assert.Equal(t, "copy.bin", r.Files[0].Path)
		assert.True(t, bytes.Equal(data, r.Files[0].Content), "the copy comes back whole")
		assert.Equal(t, pyexec.OutputFile{Path: "small.bin", MediaType: "application/octet-stream", Content: []byte{0, 255, 10}}, r.Files[1])
	})

	t.Run("paths that escape or are not plain are refused, naming them", func(t *testing.T) {
		for _, p := range []string{"../x", "/etc/passwd", "a/../../x", "./a", "a//b", `a\b`, "output"} {
			status, r := s.runRequest(pyexec.Request{Script: "def main():\n    return 1\n", Files: []pyexec.File{{Path: p}}})
			assert.Equal(t, 400, status, p)
			require.NotNil(t, r.Error, p)
			assert.Equal(t, pyexec.CodeInvalidRequest, r.Error.Code, p)
			q, _ := json.Marshal(p)
			assert.Contains(t, r.Error.Message, strings.Trim(string(q), `"`), p)
		}
		s.healthy()
	})

	t.Run("too many or too large input files are refused", func(t *testing.T) {
		var four []pyexec.File
		for i := range 4 {
			four = append(four, pyexec.File{Path: fmt.Sprintf("f%d", i)})
		}
		status, r := s.runRequest(pyexec.Request{Script: "def main():\n    return 1\n", Files: four})
		assert.Equal(t, 400, status)
		require.NotNil(t, r.Error)
		assert.Equal(t, "4 input files, over the 3-file limit", r.Error.Message)

		status, r = s.runRequest(pyexec.Request{Script: "def main():\n    return 1\n", Files: []pyexec.File{
			{Path: "a", Content: bytes.Repeat([]byte("a"), 2<<20)}, {Path: "b", Content: bytes.Repeat([]byte("b"), 2<<20+1)}}})
		assert.Equal(t, 400, status)
		require.NotNil(t, r.Error)
		assert.Equal(t, pyexec.CodeInvalidRequest, r.Error.Code)
		assert.Equal(t, fmt.Sprintf("input files hold %d bytes, over the %d-byte limit", 4<<20+1, 4<<20), r.Error.Message)
	})

	t.Run("links in output/ are not followed", func(t *testing.T) {
		status, r := s.runRequest(pyexec.Request{Script: "import os\ndef main():\n" +
			"    os.symlink('/etc/passwd', 'output/passwd')\n" +
			"    os.symlink('/harness/harness.py', 'output/harness.py')\n" +
			"    os.symlink('/etc', 'output/etc')\n" +
			"    os.mkfifo('output/fifo')\n" +
			"    open('output/real.txt', 'w').write('mine')\n" +
			"    return 'done'\n"})
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `"done"`, string(r.Result))
		assert.Equal(t, []pyexec.OutputFile{{Path: "real.txt", MediaType: "text/plain", Content: []byte("mine")}}, r.Files)
		reasons := map[string]string{}
		for _, f := range r.FilesLeftOut {
			reasons[f.Path] = f.Reason
		}
		assert.Equal(t, map[string]string{
			"passwd":     "a symbolic link: not followed",
			"harness.py": "a symbolic link: not followed",
			"etc":        "a symbolic link: not followed",
			"fifo":       "not a regular file",
		}, reasons)
		assert.False(t, r.FilesTruncated)
	})

	t.Run("output/ itself a link is not followed", func(t *testing.T) {
		status, r := s.runRequest(pyexec.Request{Script: "import os\ndef main():\n" +
			"    os.rmdir('output')\n    os.symlink('/harness', 'output')\n    return 1\n"})
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.Empty(t, r.Files)
		require.Len(t, r.FilesLeftOut, 1)
		assert.Contains(t, r.FilesLeftOut[0].Reason, "not followed")
	})

	t.Run("10,000 files in output/ give a bounded answer that says what was left out", func(t *testing.T) {
		status, r := s.runRequest(pyexec.Request{Script: "def main():\n" +
			"    for i in range(10000):\n        open('output/f%05d.txt' % i, 'w').write('x')\n    return 'written'\n",
			Timeout: 30e9})
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `"written"`, string(r.Result), "the result is returned all the same")
		assert.Len(t, r.Files, 100)
		assert.Len(t, r.FilesLeftOut, 100)
		for _, f := range r.FilesLeftOut {
			assert.Equal(t, "over the 100-file limit", f.Reason)
		}
		assert.True(t, r.FilesTruncated, "there were more than the answer names")
		s.healthy()
	})

	t.Run("run_python over /mcp takes files and returns output files", func(t *testing.T) {
		cs, err := s.connectMCP("")
		require.NoError(t, err)
		defer cs.Close()
		res, text, out := callTool(t, cs, map[string]any{
			"script": "def main():\n    n = len(open('in.txt').read())\n    open('output/n.txt', 'w').write(str(n))\n    return n\n",
			"files":  []map[string]any{{"path": "in.txt", "content": "hello"}},
		})
		assert.False(t, res.IsError, text)
		assert.Equal(t, []mcptool.OutputFile{{Path: "n.txt", Size: 1, MediaType: "text/plain", Encoding: "utf-8", Content: "5"}}, out.Files)
		assert.Contains(t, text, "file output/n.txt (text/plain, 1 bytes):\n5\n")
		res, text, out = callTool(t, cs, map[string]any{
			"script": "def main():\n    return 1\n",
			"files":  []map[string]any{{"path": "../x", "content": ""}},
		})
		assert.True(t, res.IsError, text)
		require.NotNil(t, out.Error)
		assert.Equal(t, "invalid_request", out.Error.Type)
		assert.Contains(t, out.Error.Message, `"../x"`)
	})

	t.Run("the next script sees none of the previous one's files", func(t *testing.T) {
		status, r := s.runRequest(pyexec.Request{Script: "def main():\n" +
			"    open('output/left.txt', 'w').write('x')\n    open('scratch.txt', 'w').write('x')\n    open('/tmp/t.txt', 'w').write('x')\n    return 1\n",
			Files: []pyexec.File{{Path: "data/in.txt", Content: []byte("secret")}}})
		require.Equal(t, 200, status)
		require.Nil(t, r.Error)
		status, r = s.runRequest(pyexec.Request{Script: "import os\ndef main():\n" +
			"    return {'cwd': os.getcwd(), 'work': sorted(os.path.relpath(os.path.join(d, n), '.') for d, ds, fs in os.walk('.') for n in ds + fs),\n" +
			"            'tmp_files': [n for n in os.listdir('/tmp') if n.endswith('.txt')]}\n"})
		require.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `{"cwd": "/tmp/work", "work": ["output"], "tmp_files": []}`, string(r.Result))
		assert.Empty(t, r.Files)
	})
}
