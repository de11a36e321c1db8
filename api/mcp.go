package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/mcptool"
)

// mcpPath serves the Model Context Protocol (streamable HTTP transport).
const mcpPath = "/mcp"

// mcpRequestKey carries the HTTP request to the tool call it holds: the
// SDK keeps the values of the request's context, not its cancellation.
type mcpRequestKey struct{}

type mcpRequest struct {
	id  string
	ctx context.Context
}

// mcpHandler serves MCP's streamable HTTP transport with the run_python
// tool, whose calls take the path of /execute: validation, the executor,
// the run metrics.
//
// The transport is stateless and answers in JSON rather than in an event
// stream. fasthttp hands a net/http handler a response that is sent only
// when the handler returns, so a stream could not be streamed anyway, and
// a long-lived GET stream would never end. The tool needs nothing from the
// client while it runs (no sampling, no elicitation), so nothing is lost,
// and a stateless server keeps no sessions in memory and works behind a
// load balancer that spreads one client's requests over instances.
func (s *server) mcpHandler(limits pyexec.Limits) (fiber.Handler, error) {
	srv, err := mcptool.NewServer(limits, s.runTool)
	if err != nil {
		return nil, err
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless:           true,
		JSONResponse:        true,
		MaxRequestBodyBytes: int64(s.cfg.BodyLimit),
	})
	return func(c *fiber.Ctx) error {
		// A JSON-RPC batch would let one HTTP request, counted once by the
		// rate limiter, run as many scripts at once as fit in the body; the
		// SDK accepts batches from clients of protocol versions before
		// 2025-06-18, and none of those needs one.
		if body := bytes.TrimLeft(c.Request().Body(), " \t\r\n"); len(body) > 0 && body[0] == '[' {
			return pyexec.Errorf(pyexec.CodeInvalidRequest, "JSON-RPC batches are not accepted: send one message per request")
		}
		var r http.Request
		if err := fasthttpadaptor.ConvertRequest(c.Context(), &r, true); err != nil {
			return pyexec.Errorf(pyexec.CodeInvalidRequest, "the request URI cannot be parsed")
		}
		// The request's context is not fasthttp's, which ends as soon as
		// a graceful shutdown starts: it ends when the client goes away.
		// The end of the base context ends the run (runTool), not the
		// request, so that its answer still says why.
		ctx, stop := watchPeerClose(context.WithoutCancel(s.cfg.BaseContext), c.Context().Conn())
		defer stop()
		// The SDK refuses a request that reached a loopback address with
		// another Host (DNS rebinding) once it knows the local address.
		ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.Context().LocalAddr())
		ctx = context.WithValue(ctx, mcpRequestKey{}, mcpRequest{id: requestID(c), ctx: ctx})
		w := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(w, r.WithContext(ctx))
		if errors.Is(context.Cause(ctx), errClientGone) {
			c.Locals(localOutcome, "client_gone")
			return c.SendStatus(499)
		}
		for k, vs := range w.header {
			for _, v := range vs {
				c.Response().Header.Add(k, v)
			}
		}
		c.Status(w.status)
		return c.Send(w.body.Bytes())
	}, nil
}

// bufferedResponse collects what the SDK answers, sent when it returns.
type bufferedResponse struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }

func (w *bufferedResponse) WriteHeader(status int) {
	if !w.wrote {
		w.status, w.wrote = status, true
	}
}

func (w *bufferedResponse) Write(p []byte) (int, error) {
	w.wrote = true
	return w.body.Write(p)
}

// runTool runs one run_python call: validated as /execute validates its
// body, then on the same executor, with the same run metrics, and logged
// on a line of its own under the id of the HTTP request that carried it.
func (s *server) runTool(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	start := time.Now()
	// The run ends with the service's base context, as on /execute, and
	// with its HTTP request (the client went away).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	end := func(parent context.Context) func() bool {
		return context.AfterFunc(parent, func() { cancel(context.Cause(parent)) })
	}
	defer end(s.cfg.BaseContext)()
	req.ID = uuid.NewString()
	if hr, ok := ctx.Value(mcpRequestKey{}).(mcpRequest); ok {
		req.ID = hr.id
		defer end(hr.ctx)()
	}
	resp, err := s.runChecked(ctx, req)
	outcome := "ok"
	switch {
	case errors.Is(context.Cause(ctx), errClientGone):
		outcome = "client_gone"
	case err != nil:
		outcome = string(pyexec.ErrorCode(err))
		if pyexec.ErrorCode(err) == pyexec.CodeInternal {
			s.log.Error("internal error", zap.String("request_id", req.ID), zap.Error(err))
		}
	case resp.Error != nil:
		outcome = string(resp.Error.Code)
	}
	s.cfg.Metrics.countToolCall(outcome)
	s.log.Info("tool call", zap.String("request_id", req.ID), zap.String("path", mcpPath),
		zap.String("tool", mcptool.ToolName), zap.String("outcome", outcome),
		zap.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
	return resp, err
}

// runChecked applies /execute's checks to a request that did not come as
// its JSON body (a zero Timeout is the default), then runs it.
func (s *server) runChecked(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	if req.Timeout == 0 {
		req.Timeout = s.cfg.DefaultTimeout
	} else {
		t, err := s.checkTimeout(req.Timeout.Seconds())
		if err != nil {
			return nil, err
		}
		req.Timeout = t
	}
	if err := s.checkScript(req.Script); err != nil {
		return nil, err
	}
	args, err := checkArgs(req.Args)
	if err != nil {
		return nil, err
	}
	req.Args = args
	if err := pyexec.CheckFiles(req.Files, s.cfg.MaxInputFiles, s.cfg.MaxInputBytes); err != nil {
		return nil, err
	}
	return s.run(ctx, req)
}
