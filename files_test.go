package pyexec

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCheckFilePath(t *testing.T) {
	for _, p := range []string{"a", "data/sales.csv", ".hidden", "a..b", "é/ü", strings.Repeat("x", 255), "output/x"} {
		assert.NoError(t, CheckFilePath(p), p)
	}
	for _, p := range []string{"", "/a", "..", "../a", "a/..", "a/../b", ".", "./a", "a/.", "a//b", "a/", "a\\b", "a\x00",
		strings.Repeat("x", 256), strings.Repeat("a/", 600) + "b"} {
		assert.Error(t, CheckFilePath(p), "%q", p)
	}
}

func TestCheckFiles(t *testing.T) {
	ok := []File{{Path: "a/b", Content: []byte("12")}, {Path: "a/c"}, {Path: "ab", Content: []byte("3")}}
	assert.NoError(t, CheckFiles(ok, 3, 3))
	for _, tc := range []struct {
		files []File
		msg   string
	}{
		{ok, "over the 2-file limit"},
		{[]File{{Path: "a", Content: []byte("1234")}}, "4 bytes, over the 3-byte limit"},
		{[]File{{Path: "a"}, {Path: "a"}}, `"a" is given twice`},
		{[]File{{Path: "x/y/z"}, {Path: "x/y"}}, `"x/y" is also the directory of "x/y/z"`},
		{[]File{{Path: "x/y/z"}, {Path: "x"}}, `"x" is also the directory of "x/y/z"`},
		{[]File{{Path: "output"}}, "directory for output files"},
		{[]File{{Path: "../x"}}, `"../x"`},
	} {
		err := CheckFiles(tc.files, 2, 3)
		if assert.Error(t, err, tc.msg) {
			assert.Equal(t, CodeInvalidRequest, ErrorCode(err))
			assert.Contains(t, err.Error(), tc.msg)
		}
	}
}
