// Package wire is the JSON of POST /execute, defined once: the request body
// a client sends and the envelope every answer has. Package api encodes its
// answers with these types, package client decodes them, and tests that must
// look at the bytes themselves decode into them too; api/openapi.json
// describes the same shapes.
//
// It is a package of its own, importing only the root package, because the
// wire is not the domain: the root's Request, Response and Error are what
// the service works with (durations, codes, an internal cause), while these
// are what crosses HTTP (seconds as numbers, error.type, the meta block), and
// the public JSON must not change when the domain types do.
package wire

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/pyexec/pyexec"
)

// Request is the body of POST /execute.
type Request struct {
	Script string `json:"script"`
	// Timeout is in seconds; zero leaves it out, for the service's default.
	Timeout float64 `json:"timeout,omitempty"`
	// Args is a JSON object of main's keyword arguments; left out, main
	// is called with none.
	Args json.RawMessage `json:"args,omitempty"`
	// Files are input files for the script's working directory.
	Files []File `json:"files,omitempty"`
}

// Encodings of a file's content.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
)

// File is a file in a request or an answer: content as text when it is
// UTF-8 (encoding "utf-8", the default in a request), else base64. Size
// and MediaType are set in answers only.
type File struct {
	Path      string `json:"path"`
	Size      *int   `json:"size,omitempty"`
	MediaType string `json:"media_type,omitempty"`
	Encoding  string `json:"encoding,omitempty"`
	Content   string `json:"content"`
}

// LeftOutFile is a file under output/ that is not in the answer.
type LeftOutFile struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// NewFile is the wire form of content at path: text when it is UTF-8.
func NewFile(path string, content []byte) File {
	if utf8.Valid(content) {
		return File{Path: path, Encoding: EncodingUTF8, Content: string(content)}
	}
	return File{Path: path, Encoding: EncodingBase64, Content: base64.StdEncoding.EncodeToString(content)}
}

// Decode returns the file's content as bytes, or an error naming its path
// when its encoding is unknown or its base64 is not.
func (f File) Decode() ([]byte, error) {
	switch f.Encoding {
	case "", EncodingUTF8:
		return []byte(f.Content), nil
	case EncodingBase64:
		data, err := base64.StdEncoding.DecodeString(f.Content)
		if err != nil {
			return nil, fmt.Errorf("file %q: content is not base64: %v", f.Path, err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("file %q: encoding must be %q or %q", f.Path, EncodingUTF8, EncodingBase64)
}

// NewRequest is the body that asks for req. Its ID travels in the
// X-Request-ID header, not in the body.
func NewRequest(req pyexec.Request) Request {
	out := Request{Script: req.Script, Timeout: req.Timeout.Seconds(), Args: req.Args}
	for _, f := range req.Files {
		out.Files = append(out.Files, NewFile(f.Path, f.Content))
	}
	return out
}

// Response is the envelope of every /execute answer, whatever its status:
// the three keys of the original API (result, stdout, error) always
// present, stderr, and meta when a script ran.
type Response struct {
	// Result is the JSON main() returned; null when Error is set.
	Result json.RawMessage `json:"result"`
	Stdout string          `json:"stdout"`
	Stderr string          `json:"stderr"`
	Error  *Error          `json:"error"`
	// Files are what the script left under output/ (paths relative to
	// it); FilesLeftOut those not returned, with the reason.
	Files        []File        `json:"files,omitempty"`
	FilesLeftOut []LeftOutFile `json:"files_left_out,omitempty"`
	// Figures are the matplotlib figures the script left open, present
	// only when there are some.
	Figures []Figure `json:"figures,omitempty"`
	Meta    *Meta    `json:"meta,omitempty"`
}

// Figure is one figure of an answer: a PNG, or why it was not drawn.
type Figure struct {
	MediaType string `json:"media_type"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	// Data is the PNG, base64 in the JSON; left out when Omitted is set.
	Data    []byte `json:"data,omitempty"`
	Omitted string `json:"omitted,omitempty"`
}

// FigureMediaType is the media type of every figure.
const FigureMediaType = "image/png"

// Error is the error object of an answer.
type Error struct {
	Type      pyexec.Code `json:"type"`
	Message   string      `json:"message"`
	Traceback string      `json:"traceback,omitempty"`
}

// Meta is what the service adds about a run.
type Meta struct {
	RequestID       string  `json:"request_id"`
	DurationMS      float64 `json:"duration_ms"`
	QueueMS         float64 `json:"queue_ms"`
	StdoutTruncated bool    `json:"stdout_truncated"`
	StderrTruncated bool    `json:"stderr_truncated"`
	// FilesTruncated: output/ held more entries than were looked at, so
	// files_left_out does not name every file left out.
	FilesTruncated bool `json:"files_truncated,omitempty"`
}

// NewResponse is the envelope of a script's outcome, answering the request
// with id requestID. A failed script has a null result, and so has a
// successful one that returned nothing.
func NewResponse(resp *pyexec.Response, requestID string) Response {
	out := Response{
		Result: resp.Result,
		Stdout: resp.Stdout,
		Stderr: resp.Stderr,
		Meta: &Meta{
			RequestID:       requestID,
			DurationMS:      float64(resp.Duration.Microseconds()) / 1000,
			QueueMS:         float64(resp.QueueWait.Microseconds()) / 1000,
			StdoutTruncated: resp.StdoutTruncated,
			StderrTruncated: resp.StderrTruncated,
			FilesTruncated:  resp.FilesTruncated,
		},
	}
	for _, f := range resp.Files {
		wf := NewFile(f.Path, f.Content)
		size := len(f.Content)
		wf.Size, wf.MediaType = &size, f.MediaType
		out.Files = append(out.Files, wf)
	}
	for _, f := range resp.FilesLeftOut {
		out.FilesLeftOut = append(out.FilesLeftOut, LeftOutFile(f))
	}
	for _, f := range resp.Figures {
		out.Figures = append(out.Figures, Figure{
			MediaType: FigureMediaType, Width: f.Width, Height: f.Height, Data: f.PNG, Omitted: f.Omitted,
		})
	}
	if resp.Error != nil {
		out.Result = nil
		out.Error = NewError(resp.Error)
	} else if out.Result == nil {
		out.Result = json.RawMessage("null")
	}
	return out
}

// NewError is the error object for e: its code and client-facing message,
// never its internal cause.
func NewError(e *pyexec.Error) *Error {
	return &Error{Type: e.Code, Message: e.Message, Traceback: e.Traceback}
}

// Domain turns an answer back into the domain's Response.
func (r *Response) Domain() *pyexec.Response {
	out := &pyexec.Response{
		Result: r.Result,
		Stdout: r.Stdout,
		Stderr: r.Stderr,
	}
	for _, f := range r.Figures {
		out.Figures = append(out.Figures, pyexec.Figure{PNG: f.Data, Width: f.Width, Height: f.Height, Omitted: f.Omitted})
	}
	if r.Error != nil {
		out.Result = nil
		out.Error = r.Error.Domain()
	}
	for _, f := range r.Files {
		// A file whose content cannot be decoded is named as left out
		// rather than dropped.
		data, err := f.Decode()
		if err != nil {
			out.FilesLeftOut = append(out.FilesLeftOut, pyexec.LeftOutFile{Path: f.Path, Reason: err.Error()})
			continue
		}
		out.Files = append(out.Files, pyexec.OutputFile{Path: f.Path, MediaType: f.MediaType, Content: data})
	}
	for _, f := range r.FilesLeftOut {
		out.FilesLeftOut = append(out.FilesLeftOut, pyexec.LeftOutFile(f))
	}
	if r.Meta != nil {
		out.FilesTruncated = r.Meta.FilesTruncated
		out.StdoutTruncated = r.Meta.StdoutTruncated
		out.StderrTruncated = r.Meta.StderrTruncated
		out.Duration = millis(r.Meta.DurationMS)
		out.QueueWait = millis(r.Meta.QueueMS)
	}
	return out
}

// Domain is the domain's Error for this error object.
func (e *Error) Domain() *pyexec.Error {
	return &pyexec.Error{Code: e.Type, Message: e.Message, Traceback: e.Traceback}
}

func millis(ms float64) time.Duration {
	return time.Duration(ms * float64(time.Millisecond))
}
