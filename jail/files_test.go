package jail

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pyexec/pyexec"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The harness's list of output files is the script's to write: the
// service takes only what its own limits and path rules allow, and names
// everything else as left out.
func TestCheckFilesTrustsNothingTheJailSays(t *testing.T) {
	m := &replyMsg{
		Files: []fileMsg{
			{Path: "b.txt", Content: b64("bb"), MediaType: "text/plain"},
			{Path: "a.csv", Content: b64("a"), MediaType: "text/csv"},
			{Path: "../../etc/passwd", Content: b64("root")},
			{Path: "a.csv", Content: b64("again")},
			{Path: "odd", Content: b64("x"), MediaType: "text/html\r\nX-Evil: 1"},
			{Path: "bad64", Content: "!!"},
			{Path: "big", Content: b64(strings.Repeat("x", 20))},
			{Path: "more", Content: b64("m")},
		},
		FilesLeftOut: []leftOutMsg{{Path: "link", Reason: "a symbolic link: not followed"}},
	}
	files, left, truncated := checkFiles(m, 3, 10)
	assert.Equal(t, []pyexec.OutputFile{
		{Path: "a.csv", MediaType: "text/csv", Content: []byte("a")},
		{Path: "b.txt", MediaType: "text/plain", Content: []byte("bb")},
		{Path: "odd", MediaType: "application/octet-stream", Content: []byte("x")},
	}, files)
	assert.Equal(t, []pyexec.LeftOutFile{
		{Path: `"../../etc/passwd"`, Reason: "the sandbox reported an invalid or repeated path"},
		{Path: "a.csv", Reason: "the sandbox reported an invalid or repeated path"},
		{Path: "bad64", Reason: "the sandbox sent content that is not base64"},
	}, left, "the left-out list is capped at the file limit too")
	assert.True(t, truncated, "more was left out than is named")

	files, left, truncated = checkFiles(&replyMsg{Files: m.Files[6:7]}, 3, 10)
	assert.Empty(t, files)
	assert.Equal(t, []pyexec.LeftOutFile{{Path: "big", Reason: "20 bytes, over what is left of the 10-byte limit on output files"}}, left)
	assert.False(t, truncated)

	many := &replyMsg{}
	for i := range 5 {
		many.Files = append(many.Files, fileMsg{Path: fmt.Sprintf("f%d", i), Content: b64("x")})
	}
	files, left, _ = checkFiles(many, 2, 100)
	assert.Len(t, files, 2)
	assert.Equal(t, pyexec.LeftOutFile{Path: "f2", Reason: "over the 2-file limit"}, left[0])

	_, left, _ = checkFiles(&replyMsg{FilesLeftOut: []leftOutMsg{{Path: "x", Reason: strings.Repeat("é", 300) + "\xff"}}}, 2, 100)
	assert.LessOrEqual(t, len(left[0].Reason), maxReasonBytes+len("…"))
}

func TestRequestAndReplyLinesGrowWithTheFileLimits(t *testing.T) {
	c := Config{MaxScriptBytes: 1000, MaxOutputBytes: 1000}
	req, rep := c.maxRequestLine(), c.maxReplyLine()
	c.MaxInputFiles, c.MaxInputBytes = 10, 3<<20
	c.MaxOutputFiles, c.MaxOutputFilesBytes = 10, 3<<20
	assert.GreaterOrEqual(t, c.maxRequestLine()-req, 4<<20+10*6*pyexec.MaxFilePathBytes, "input files travel in base64")
	assert.GreaterOrEqual(t, c.maxReplyLine()-rep, 4<<20+20*6*pyexec.MaxFilePathBytes, "output files travel in base64")
}

// The request line has room for the largest request the limits allow.
func TestRequestLineFitsTheLargestRequest(t *testing.T) {
	c := Config{MaxScriptBytes: 1000, MaxOutputBytes: 1000, MaxInputFiles: 4, MaxInputBytes: 3 << 20}
	path := strings.Repeat("\x01", pyexec.MaxFileSegmentBytes) + "/" + strings.Repeat("\x01", pyexec.MaxFileSegmentBytes)
	msg := requestMsg{ID: "x", Script: strings.Repeat("\x01", c.MaxScriptBytes), Args: []byte(`{}`),
		Limits: requestLimits{MaxOutputBytes: 1 << 30, MaxScriptBytes: 1 << 30, Validation: "standard", MaxOutputFiles: 1 << 30, MaxOutputFilesBytes: 1 << 30}}
	for i := range c.MaxInputFiles {
		msg.Files = append(msg.Files, fileMsg{Path: path + string(rune('a'+i)), Content: base64.StdEncoding.EncodeToString(make([]byte, c.MaxInputBytes/c.MaxInputFiles))})
	}
	line, err := encodeLine(msg)
	assert.NoError(t, err)
	assert.LessOrEqual(t, len(line), c.maxRequestLine())
	assert.Greater(t, len(line), c.MaxInputBytes*4/3, "the request is as large as the limits allow")
}
