package mcptool

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

func TestTool_PassesFiles(t *testing.T) {
	rec := &recorder{}
	send := rawServer(t, pyexec.Limits{}, rec.run)
	send(initialize)
	res := send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1",
		"files":[{"path":"data/a.csv","content":"x,y\n"},{"path":"b.bin","content":"AP8=","encoding":"base64"}]}}`)
	assert.Nil(t, res["isError"], "%v", res)
	res = send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1","files":null}}`)
	assert.Nil(t, res["isError"], "null is no files, as on /execute: %v", res)
	res = send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1",
		"files":[{"path":"a","content":"!!","encoding":"base64"}]}}`)
	e := toolError(t, res)
	assert.Equal(t, "invalid_request", e["type"])
	assert.Contains(t, e["message"], `file "a": content is not base64`)
	res = send(`"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return 1",
		"files":[{"path":"a","content":"\udc80"}]}}`)
	assert.Equal(t, "invalid_request", toolError(t, res)["type"])
	calls := rec.calls()
	require.Len(t, calls, 2)
	assert.Equal(t, []pyexec.File{{Path: "data/a.csv", Content: []byte("x,y\n")}, {Path: "b.bin", Content: []byte{0, 0xff}}}, calls[0].Files)
	assert.Empty(t, calls[1].Files)
}

func TestFormat_OutputFiles(t *testing.T) {
	res, out, err := Format(&pyexec.Response{Result: json.RawMessage(`1`),
		Files: []pyexec.OutputFile{
			{Path: "s.csv", MediaType: "text/csv", Content: []byte("a,b\n1,2")},
			{Path: "p.png", MediaType: "image/png", Content: []byte{0x89, 0xff}},
		},
		FilesLeftOut:   []pyexec.LeftOutFile{{Path: "l", Reason: "a symbolic link: not followed"}},
		FilesTruncated: true,
	})
	require.NoError(t, err)
	assert.False(t, res.IsError)
	assert.Equal(t, "file output/s.csv (text/csv, 7 bytes):\na,b\n1,2\n\n"+
		"file output/p.png (image/png, 2 bytes): binary, base64 in the structured result's files\n\n"+
		"file output/l left out: a symbolic link: not followed\n"+
		"output/ held more files than were looked at\n"+
		"result: 1\n", text(t, res))
	data, err := json.Marshal(out)
	require.NoError(t, err)
	assert.JSONEq(t, `{"result": 1, "stdout": "", "stderr": "", "error": null,
		"files": [{"path": "s.csv", "size": 7, "media_type": "text/csv", "encoding": "utf-8", "content": "a,b\n1,2"},
		          {"path": "p.png", "size": 2, "media_type": "image/png", "encoding": "base64", "content": "if8="}],
		"files_left_out": [{"path": "l", "reason": "a symbolic link: not followed"}],
		"files_truncated": true}`, string(data))
}

func TestDescription_StatesTheFileLimits(t *testing.T) {
	d := Description(pyexec.Limits{MaxInputFiles: 100, MaxInputBytes: 10485760, MaxOutputFiles: 50, MaxOutputFilesBytes: 2048})
	assert.Contains(t, d, "up to 100 input files, 10485760 bytes in all")
	assert.Contains(t, d, "up to 50 output files returned, 2048 bytes in all (the rest are listed as left out)")
	assert.NotContains(t, Description(pyexec.Limits{}), "input files,")
}
