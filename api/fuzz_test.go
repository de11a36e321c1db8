package api

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pyexec/pyexec"
)

// FuzzDecodeRequest: no body, however malformed, may panic the decoder or
// yield anything but a request or an invalid_request/validation_error.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"script": "def main():\n    return 1"}`,
		`{"script": "x", "timeout": 2.5}`,
		`{"script": "x", "timeout": "5"}`,
		`{"script": null}`,
		`{"script": 5}`,
		`{"timeout": 1e308, "script": ""}`,
		`[1, 2]`,
		`{`,
		``,
		`null`,
		`{"script": "\ud800"}`,
		`{"script": "\udc80 \\udc80"}`,
		`{"script": "\ud83d\ude00 \ufffd"}`,
		`{"script": "a", "script": "b"}`,
		`{"script": "x", "timeout": -0}`,
		"{\"script\": \"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	s := &server{cfg: Config{MaxScriptBytes: 1024, DefaultTimeout: 5 * time.Second, MaxTimeout: 30 * time.Second}}
	if err := s.cfg.check(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := s.decodeRequest(data)
		if err != nil {
			switch pyexec.ErrorCode(err) {
			case pyexec.CodeInvalidRequest, pyexec.CodeValidation:
			default:
				t.Fatalf("unexpected error code for %q: %v", data, err)
			}
			return
		}
		if req.Timeout <= 0 || req.Timeout > s.cfg.MaxTimeout {
			t.Fatalf("timeout %v out of range for %q", req.Timeout, data)
		}
		if len(req.Script) > s.cfg.MaxScriptBytes {
			t.Fatalf("script over the limit accepted: %d bytes", len(req.Script))
		}
		if !utf8.ValidString(req.Script) {
			t.Fatalf("decoded script is not UTF-8: %q", req.Script)
		}
		if !utf8.Valid(data) {
			t.Fatalf("a body that is not UTF-8 was accepted: %q", data)
		}
		// U+FFFD in the script must come from the body, not from a
		// replacement made while decoding it.
		if strings.ContainsRune(req.Script, utf8.RuneError) &&
			!bytes.ContainsRune(data, utf8.RuneError) && !bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`)) {
			t.Fatalf("the decoder replaced part of the script with U+FFFD: %q", data)
		}
	})
}
