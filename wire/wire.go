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
	"encoding/json"
	"time"

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
}

// NewRequest is the body that asks for req. Its ID travels in the
// X-Request-ID header, not in the body.
func NewRequest(req pyexec.Request) Request {
	return Request{Script: req.Script, Timeout: req.Timeout.Seconds(), Args: req.Args}
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
		},
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
	if r.Meta != nil {
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
