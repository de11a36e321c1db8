package jail

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzLineReader: whatever a worker writes, the reader returns lines of at
// most max bytes, errors it names, and never loops or panics.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"ready\": true}\n{\"result\": 1}\n"), 16)
	f.Add([]byte("no newline at the end"), 8)
	f.Add([]byte("\n\n\n"), 1)
	f.Add(bytes.Repeat([]byte("x"), 70000), 65536)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 1 || max > 1<<20 {
			return
		}
		lr := newLineReader(bytes.NewReader(data), max)
		for i := 0; i <= len(data)+1; i++ {
			line, err := lr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("unexpected error %v", err)
				}
				if errors.Is(err, ErrLineTooLong) {
					continue
				}
				return
			}
			if len(line) > max {
				t.Fatalf("line of %d bytes over max %d", len(line), max)
			}
			if bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line contains a newline")
			}
		}
		t.Fatalf("reader did not finish %d bytes", len(data))
	})
}

// FuzzDecodeReply: a reply either decodes into a result or an error for the
// right request, or is refused; it never panics.
func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(`{"result": {"a": 1}, "id": "r", "stdout": "", "error": null}`))
	f.Add([]byte(`{"result": null, "id": "r", "error": {"type": "runtime_error", "message": "x"}}`))
	f.Add([]byte(`{"id": "other", "result": 1}`))
	f.Add([]byte(`{"result": 1e999, "id": "r"}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decodeReply(line, "r")
		if err != nil {
			return
		}
		if m.ID != "r" {
			t.Fatalf("accepted a reply to %q", m.ID)
		}
		if m.Error == nil && len(m.Result) == 0 {
			t.Fatal("accepted a reply with neither result nor error")
		}
	})
}
