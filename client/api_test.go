package client

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/api"
)

// executorFunc is a pyexec.Executor made of a function.
type executorFunc func(context.Context, pyexec.Request) (*pyexec.Response, error)

func (f executorFunc) Execute(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	return f(ctx, req)
}

// TestExecute_AgainstTheHTTPLayer reads the answers of the real package
// api, with a fake executor behind it, so that the client and the service
// are shown to agree on the wire without a jail.
func TestExecute_AgainstTheHTTPLayer(t *testing.T) {
	var got pyexec.Request
	exec := executorFunc(func(_ context.Context, req pyexec.Request) (*pyexec.Response, error) {
		got = req
		switch req.Script {
		case "ok":
			return &pyexec.Response{Result: json.RawMessage(`{"n":1}`), Stdout: "o", Stderr: "e", StderrTruncated: true}, nil
		case "raise":
			return &pyexec.Response{Stdout: "before", Error: &pyexec.Error{Code: pyexec.CodeRuntime, Message: "ValueError: boom", Traceback: "tb"}}, nil
		case "no main":
			return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeValidation, "script must define main()")}, nil
		default:
			return nil, pyexec.Errorf(pyexec.CodeOverloaded, "no worker became free")
		}
	})
	app, err := api.New(api.Config{APIKey: "k3y", MaxScriptBytes: 1 << 10, DefaultTimeout: 5 * time.Second, MaxTimeout: 10 * time.Second}, exec,
		func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, app.Shutdown())
		assert.NoError(t, <-served)
	})
	c := &Client{BaseURL: "http://" + ln.Addr().String(), APIKey: "k3y"}
	ctx := context.Background()

	a, err := c.Execute(ctx, pyexec.Request{ID: "chosen-id", Script: "ok", Timeout: 1500 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, 200, a.Status)
	assert.Equal(t, "chosen-id", a.RequestID)
	assert.Equal(t, "chosen-id", got.ID)
	assert.Equal(t, 1500*time.Millisecond, got.Timeout)
	assert.Nil(t, a.Error)
	assert.JSONEq(t, `{"n":1}`, string(a.Result))
	assert.Equal(t, "o", a.Stdout)
	assert.Equal(t, "e", a.Stderr)
	assert.True(t, a.StderrTruncated)

	a, err = c.Execute(ctx, pyexec.Request{Script: "raise"})
	require.NoError(t, err)
	assert.Equal(t, 200, a.Status)
	assert.NotEmpty(t, a.RequestID, "the service makes an id when none is sent")
	require.NotNil(t, a.Error)
	assert.Equal(t, &pyexec.Error{Code: pyexec.CodeRuntime, Message: "ValueError: boom", Traceback: "tb"}, a.Error)
	assert.Equal(t, "before", a.Stdout)

	a, err = c.Execute(ctx, pyexec.Request{Script: "no main"})
	require.NoError(t, err)
	assert.Equal(t, 400, a.Status)
	assert.Equal(t, pyexec.CodeValidation, a.Error.Code)

	refused := func(c *Client, req pyexec.Request) (*pyexec.Error, *StatusError) {
		t.Helper()
		_, err := c.Execute(ctx, req)
		var pe *pyexec.Error
		var se *StatusError
		require.ErrorAs(t, err, &pe)
		require.ErrorAs(t, err, &se)
		return pe, se
	}
	pe, se := refused(c, pyexec.Request{Script: "busy"})
	assert.Equal(t, pyexec.CodeOverloaded, pe.Code)
	assert.Equal(t, 503, se.Status)
	assert.Equal(t, time.Second, se.RetryAfter)

	pe, se = refused(c, pyexec.Request{Script: "ok", Timeout: time.Minute})
	assert.Equal(t, pyexec.CodeInvalidRequest, pe.Code, "a timeout over the maximum")
	assert.Equal(t, 400, se.Status)

	pe, se = refused(&Client{BaseURL: c.BaseURL, APIKey: "wrong"}, pyexec.Request{ID: "x-1", Script: "ok"})
	assert.Equal(t, pyexec.CodeUnauthorized, pe.Code)
	assert.Equal(t, 401, se.Status)
	assert.Equal(t, "x-1", se.RequestID)
}
