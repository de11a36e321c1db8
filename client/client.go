// Package client runs scripts on a pyexec service over HTTP. It is what the
// command-line client, the benchmark and the end-to-end tests use to speak
// to the service, so the API's JSON is read in one place (package wire).
//
// Execute tells two kinds of answers apart. A script's outcome, success or
// failure (runtime_error, timeout, validation_error...), is an *Answer whose
// Error says how the script failed. Any other answer (unauthorized,
// rate_limited, overloaded, payload_too_large, internal_error, or a body
// that is not the service's JSON at all) is an error: a *pyexec.Error with
// the answer's code, whose cause is a *StatusError with the HTTP status.
// Failing to reach the service returns the transport's error as it is.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/wire"
)

// maxAnswerBytes bounds what is read of one answer. The service's answers
// are bounded well below it (stdout and stderr are truncated, a result over
// its limit is an output_limit error), so anything longer is not its.
const maxAnswerBytes = 256 << 20

// ErrNotEnvelope is the cause of the error for an answer whose body is not
// the service's JSON envelope, such as a proxy's error page.
var ErrNotEnvelope = errors.New("the answer is not the service's JSON envelope")

// Client calls one service. Its zero value is not usable: BaseURL is
// required. It is safe for concurrent use.
type Client struct {
	// BaseURL is the service's address, such as http://127.0.0.1:8080.
	BaseURL string
	// APIKey, when set, is sent as "Authorization: Bearer <key>".
	APIKey string
	// HTTP sends the requests (nil: http.DefaultClient).
	HTTP *http.Client
}

// Answer is an answer that carries a script's outcome: its Response (Error
// set when the script failed), the HTTP status (200, or 400 for a script
// refused before it ran) and the request id the service answered with.
type Answer struct {
	*pyexec.Response
	Status    int
	RequestID string
}

// StatusError is the cause inside the *pyexec.Error returned for an answer
// that is not a script's outcome.
type StatusError struct {
	Status    int
	RequestID string
	// RetryAfter is the wait the service asked for (Retry-After, sent with
	// rate_limited and overloaded); zero when it asked for none.
	RetryAfter time.Duration
	// Err is ErrNotEnvelope when the body was not the service's JSON.
	Err error
}

func (e *StatusError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err)
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

func (e *StatusError) Unwrap() error { return e.Err }

// Execute posts req to /execute and waits for the answer. req.ID, when set,
// is sent as X-Request-ID; a zero req.Timeout leaves the timeout to the
// service's default.
func (c *Client) Execute(ctx context.Context, req pyexec.Request) (*Answer, error) {
	data, err := json.Marshal(wire.NewRequest(req))
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/execute", bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if c.APIKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	if req.ID != "" {
		hreq.Header.Set("X-Request-ID", req.ID)
	}
	res, err := c.httpClient().Do(hreq)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return decode(res, body)
}

// decode sorts an answer into a script's outcome or an error.
func decode(res *http.Response, body []byte) (*Answer, error) {
	se := &StatusError{Status: res.StatusCode, RequestID: res.Header.Get("X-Request-ID")}
	if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && secs > 0 {
		se.RetryAfter = time.Duration(secs) * time.Second
	}
	env, ok := envelope(res.StatusCode, body)
	if !ok {
		se.Err = ErrNotEnvelope
		return nil, &pyexec.Error{Code: pyexec.CodeInternal, Err: se,
			Message: fmt.Sprintf("the service answered %d with something that is not its JSON: %.100q", res.StatusCode, body)}
	}
	if env.Error != nil && !outcome(res.StatusCode, env.Error.Type) {
		e := env.Error.Domain()
		e.Err = se
		return nil, e
	}
	return &Answer{Response: env.Domain(), Status: res.StatusCode, RequestID: se.RequestID}, nil
}

// envelope decodes body when it is the service's envelope: a JSON object
// with the original API's three keys, which has an error unless the status
// is 200, and whose error, if any, has a type and comes with a null result.
func envelope(status int, body []byte) (*wire.Response, bool) {
	if len(body) > maxAnswerBytes {
		return nil, false
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(body, &keys) != nil || keys == nil {
		return nil, false
	}
	for _, k := range []string{"result", "stdout", "error"} {
		if _, ok := keys[k]; !ok {
			return nil, false
		}
	}
	var env wire.Response
	if json.Unmarshal(body, &env) != nil {
		return nil, false
	}
	if env.Error == nil {
		return &env, status == http.StatusOK
	}
	return &env, env.Error.Type != "" && string(env.Result) == "null"
}

// outcome reports whether an answer with this status and error code is a
// script's outcome: a code the script's behaviour produces, answered 200,
// or 400 for a script refused before it ran.
func outcome(status int, code pyexec.Code) bool {
	return pyexec.IsScriptCode(code) && (status == http.StatusOK || status == http.StatusBadRequest)
}

// httpClient is c.HTTP, else Go's default client.
func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// Health reads GET /health: whether the service can run scripts, and the
// limits it enforces. A service that cannot (503) still says why and what
// its limits are, so its answer is returned with no error.
func (c *Client) Health(ctx context.Context) (*pyexec.Status, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+"/health", nil)
	if err != nil {
		return nil, err
	}
	res, err := c.httpClient().Do(hreq)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	se := &StatusError{Status: res.StatusCode, RequestID: res.Header.Get("X-Request-ID")}
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusServiceUnavailable {
		return nil, se
	}
	var st pyexec.Status
	if err := json.NewDecoder(io.LimitReader(res.Body, maxAnswerBytes)).Decode(&st); err != nil {
		se.Err = ErrNotEnvelope
		return nil, se
	}
	return &st, nil
}
