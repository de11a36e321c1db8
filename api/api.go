// Package api is the HTTP face of the service: fiber handlers for /execute
// and /health, request decoding and validation of the envelope, optional API
// key, request logs, and the mapping of error codes to HTTP statuses.
package api

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/limiter"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/wire"
)

// Config configures the HTTP layer. MaxScriptBytes, DefaultTimeout and
// MaxTimeout are required (the service's defaults for them are set where its
// configuration is read); the other fields have defaults.
type Config struct {
	// MaxScriptBytes is the largest script accepted.
	MaxScriptBytes int
	// BodyLimit is the largest HTTP body read (default: room for a script
	// of MaxScriptBytes even if every byte is JSON-escaped; cmd/pyexecd
	// sizes it for the input files as well).
	BodyLimit int
	// MaxInputFiles and MaxInputBytes bound a request's input files: how
	// many, and their decoded content in all. Zero takes no input files.
	MaxInputFiles int
	MaxInputBytes int
	// DefaultTimeout applies when a request gives none.
	DefaultTimeout time.Duration
	// MaxTimeout is the largest timeout a request may ask for.
	MaxTimeout time.Duration
	// APIKey, when set, is required as "Authorization: Bearer <key>" on
	// /execute. /health stays open for probes.
	APIKey string
	// RetryAfter is sent with overloaded answers (default 1s).
	RetryAfter time.Duration
	// RateLimit, when positive, is how many /execute and /mcp requests one
	// client (the holder of APIKey when it is set, else an address) may
	// make per minute.
	RateLimit int
	// Metrics, when set, are updated per request and served on /metrics.
	Metrics *Metrics
	// BaseContext is the parent of every request's context; cancelling it
	// ends every running script (default: context.Background()).
	BaseContext context.Context
	// TraceProject is the Google Cloud project used to turn a request's
	// traceparent or X-Cloud-Trace-Context header into Cloud Logging's trace
	// field; without it the trace id is logged unlinked, as trace_id.
	TraceProject string
	// CORSOrigins lists the web origins ("https://app.example.com") whose
	// pages may call the API from a browser. Empty (the default) turns CORS
	// off: no Access-Control-* header is ever sent. Each entry must be a
	// scheme://host[:port] origin; cmd/pyexecd checks them.
	CORSOrigins []string
	// ReadTimeout bounds the time to receive a whole request, head and
	// body (default 30s); a request slower than that is answered 408.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time to send one answer (default 30s): a
	// client that stops reading cannot keep its answer, up to a few MB,
	// in the service's memory.
	WriteTimeout time.Duration
}

// check refuses a configuration with a required field left out and fills
// in the defaults of the others.
func (c *Config) check() error {
	if c.MaxScriptBytes <= 0 || c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout {
		return errors.New("api configuration: MaxScriptBytes, DefaultTimeout and MaxTimeout (at least DefaultTimeout) must be set")
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = 6*c.MaxScriptBytes + 64*1024
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.BaseContext == nil {
		c.BaseContext = context.Background()
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	return nil
}

// openAPIDocument describes the whole API, for a service with an API key;
// /openapi.json serves it as this instance runs (see servedDocument), and
// the tests check real answers against it.
//
//go:embed openapi.json
var openAPIDocument string

// HealthFunc reports the service's state for /health.
type HealthFunc func() pyexec.Status

type server struct {
	cfg    Config
	exec   pyexec.Executor
	health HealthFunc
	log    *zap.Logger
}

// New builds the fiber app. exec runs scripts; health feeds /health.
func New(cfg Config, exec pyexec.Executor, health HealthFunc, log *zap.Logger) (*fiber.App, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	doc, err := servedDocument(openAPIDocument, cfg.APIKey != "")
	if err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, exec: exec, health: health, log: log}
	app := fiber.New(fiber.Config{
		AppName:               "pyexec",
		BodyLimit:             cfg.BodyLimit,
		DisableStartupMessage: true,
		ErrorHandler:          s.handleError,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           120 * time.Second,
		// One spelling per endpoint: /execute/ or /EXECUTE are 404, so
		// every script run is one logged and counted as /execute.
		StrictRouting: true,
		CaseSensitive: true,
		// The request body is copied out by json.Unmarshal before any
		// other goroutine sees it, so fasthttp may reuse its buffers.
		Immutable: false,
	})
	s.answerEarlyErrors(app)
	app.Use(s.requestLog, oneFraming)
	if len(cfg.CORSOrigins) > 0 {
		app.Use(s.cors())
	}
	// Checks run in this order: the Host of a request to a loopback
	// address, the key, the rate, then the body's media type and encoding,
	// so that a client without the key learns nothing else (a body over the limit, or one whose length is ambiguous, is
	// refused earlier).
	// /mcp is behind the same key and the same rate limiter (one budget
	// per client for both).
	gate := []fiber.Handler{loopbackHost, s.authorize}
	if cfg.RateLimit > 0 {
		gate = append(gate, s.rateLimiter())
	}
	execute := append(slices.Clone(gate), requireJSON)
	app.Post("/execute", append(execute, s.execute)...)
	serveMCP, err := s.mcpHandler(health().Limits)
	if err != nil {
		return nil, err
	}
	// Only POST: a stateless server has no stream for GET and no session
	// for DELETE, so those get the service's own 405, with Allow: POST like
	// any other method there.
	app.Post(mcpPath, append(slices.Clone(execute), serveMCP)...)
	app.Get("/health", s.healthz)
	app.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(doc)
	})
	if cfg.Metrics != nil {
		app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(cfg.Metrics.gatherer, promhttp.HandlerOpts{})))
	}
	return app, nil
}

const (
	localRequestID = "pyexec.request_id"
	localOutcome   = "pyexec.outcome"
)

// requestLog assigns a request id (accepting a sane X-Request-ID), echoes
// it, and logs one line per request. Scripts and outputs are never logged.
func (s *server) requestLog(c *fiber.Ctx) error {
	start := time.Now()
	id := s.assignRequestID(c)
	err := c.Next()
	if err != nil {
		if herr := s.handleError(c, err); herr != nil {
			s.log.Error("write error response", zap.Error(herr))
		}
	}
	elapsed := time.Since(start)
	status := c.Response().StatusCode()
	if c.Path() == "/execute" {
		s.cfg.Metrics.observeRequest(outcomeOf(c), status, elapsed)
	}
	s.logRequest(c, id, c.Method(), c.Path(), elapsed)
	return nil
}

// assignRequestID takes the client's X-Request-ID when it is sane, or makes
// one, and sets it on the answer.
func (s *server) assignRequestID(c *fiber.Ctx) string {
	id := c.Get("X-Request-ID")
	if !validRequestID(id) {
		id = uuid.NewString()
	}
	c.Locals(localRequestID, id)
	c.Set("X-Request-ID", id)
	return id
}

func outcomeOf(c *fiber.Ctx) string {
	if outcome, _ := c.Locals(localOutcome).(string); outcome != "" {
		return outcome
	}
	// Answers no handler of ours classified (the MCP SDK's own refusals)
	// are named by their status, never "ok".
	switch status := c.Response().StatusCode(); {
	case status < 400:
		return "ok"
	case status == http.StatusBadRequest:
		return string(pyexec.CodeInvalidRequest)
	case status == http.StatusForbidden:
		return string(pyexec.CodeForbidden)
	case status == http.StatusNotFound:
		return string(pyexec.CodeNotFound)
	case status == http.StatusMethodNotAllowed:
		return string(pyexec.CodeMethodNotAllowed)
	case status == http.StatusNotAcceptable, status == http.StatusUnsupportedMediaType:
		return string(pyexec.CodeUnsupportedMediaType)
	default:
		return "http_" + strconv.Itoa(status)
	}
}

// logRequest writes the one "request" line of an answer already made;
// latency is 0 when the start of the request is not known.
func (s *server) logRequest(c *fiber.Ctx, id, method, path string, latency time.Duration) {
	fields := []zap.Field{
		zap.String("request_id", id),
		zap.String("outcome", outcomeOf(c)),
		zap.Object("httpRequest", newHTTPRequest(c, method, path, latency)),
	}
	if tc, ok := traceOf(c); ok {
		fields = append(fields, tc.fields(s.cfg.TraceProject)...)
	}
	s.log.Info("request", fields...)
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

func requestID(c *fiber.Ctx) string {
	id, _ := c.Locals(localRequestID).(string)
	return id
}

// handleError writes the JSON error answer for err. It is fiber's error
// handler too, so errors raised by routing (unknown path, wrong method) get
// the same shape; requests that could not be read are answered in early.go.
func (s *server) handleError(c *fiber.Ctx, err error) error {
	ae := toAppError(err)
	if ae.Code == pyexec.CodeInternal {
		s.log.Error("internal error", zap.String("request_id", requestID(c)), zap.Error(err))
	}
	return s.writeError(c, ae)
}

func (s *server) writeError(c *fiber.Ctx, ae *pyexec.Error) error {
	c.Locals(localOutcome, string(ae.Code))
	switch ae.Code {
	case pyexec.CodeOverloaded:
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(s.cfg.RetryAfter.Seconds()))))
	case pyexec.CodeUnauthorized:
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="pyexec"`)
	case pyexec.CodeRateLimited:
		c.Set(fiber.HeaderRetryAfter, "60")
	}
	return c.Status(StatusOf(ae.Code)).JSON(wire.Response{Error: wire.NewError(ae)})
}

func (s *server) authorize(c *fiber.Ctx) error {
	if s.cfg.APIKey == "" {
		return c.Next()
	}
	got := c.Get(fiber.HeaderAuthorization)
	const prefix = "Bearer "
	if len(got) > len(prefix) && strings.EqualFold(got[:len(prefix)], prefix) {
		key := got[len(prefix):]
		if subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) == 1 {
			return c.Next()
		}
	}
	return pyexec.Errorf(pyexec.CodeUnauthorized, "a valid API key is required (Authorization: Bearer <key>)")
}

// rateLimiter allows RateLimit requests per minute per client: the holder
// of the API key when one is configured (every request here has passed
// authorize, so clients behind one proxy share it no matter how they spell
// "Bearer"), else its address. An Authorization header the service does
// not check names no one: keyed on it, each new header was a new budget.
func (s *server) rateLimiter() fiber.Handler {
	return limiter.New(limiter.Config{
		Max:        s.cfg.RateLimit,
		Expiration: time.Minute,
		KeyGenerator: func(c *fiber.Ctx) string {
			if s.cfg.APIKey != "" {
				return "key"
			}
			return "ip:" + c.IP()
		},
		LimitReached: func(c *fiber.Ctx) error {
			return pyexec.Errorf(pyexec.CodeRateLimited, "more than %d requests in a minute from this client", s.cfg.RateLimit)
		},
	})
}

// decodeRequest validates the envelope: a JSON object with a string script,
// an optional timeout in seconds and optional args for main.
func (s *server) decodeRequest(data []byte) (pyexec.Request, error) {
	// Go's decoder would turn bytes that are not UTF-8 into U+FFFD and run
	// a script the client never sent.
	if !utf8.Valid(data) {
		return pyexec.Request{}, pyexec.Errorf(pyexec.CodeInvalidRequest, "request body must be UTF-8")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return pyexec.Request{}, pyexec.Errorf(pyexec.CodeInvalidRequest, "request body must be a JSON object")
	}
	raw, ok := fields["script"]
	if !ok {
		return pyexec.Request{}, pyexec.Errorf(pyexec.CodeInvalidRequest, `"script" is required`)
	}
	var script string
	if string(raw) == "null" || json.Unmarshal(raw, &script) != nil {
		return pyexec.Request{}, pyexec.Errorf(pyexec.CodeInvalidRequest, `"script" must be a string`)
	}
	// The same goes for an escaped surrogate with no partner ("\udc80"):
	// valid JSON text, but no character, which Go's decoder turns into U+FFFD.
	if esc, ok := pyexec.LoneSurrogate(raw); ok {
		return pyexec.Request{}, pyexec.Errorf(pyexec.CodeInvalidRequest,
			`"script" contains %s, half of a surrogate pair without the other half: not a character`, esc)
	}
	timeout := s.cfg.DefaultTimeout
	if raw, ok := fields["timeout"]; ok && string(raw) != "null" {
		var secs float64
		if err := json.Unmarshal(raw, &secs); err != nil {
			return pyexec.Request{}, pyexec.Errorf(pyexec.CodeInvalidRequest, `"timeout" must be a number of seconds`)
		}
		var err error
		if timeout, err = s.checkTimeout(secs); err != nil {
			return pyexec.Request{}, err
		}
	}
	if err := s.checkScript(script); err != nil {
		return pyexec.Request{}, err
	}
	args, err := checkArgs(fields["args"])
	if err != nil {
		return pyexec.Request{}, err
	}
	files, err := s.checkFiles(fields["files"])
	if err != nil {
		return pyexec.Request{}, err
	}
	return pyexec.Request{Script: script, Timeout: timeout, Args: args, Files: files}, nil
}

// checkFiles accepts the JSON text of "files": a list of input files, or
// nothing (left out or null). Every rule on their paths and sizes is
// checked here, before a worker is taken; the harness checks them again
// as it writes.
func (s *server) checkFiles(raw json.RawMessage) ([]pyexec.File, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, pyexec.Errorf(pyexec.CodeInvalidRequest,
			`"files" must be a list of {"path", "content", "encoding"} objects`)
	}
	if len(list) > s.cfg.MaxInputFiles {
		return nil, pyexec.Errorf(pyexec.CodeInvalidRequest,
			"%d input files, over the %d-file limit", len(list), s.cfg.MaxInputFiles)
	}
	if esc, ok := pyexec.LoneSurrogate(raw); ok {
		return nil, pyexec.Errorf(pyexec.CodeInvalidRequest,
			`"files" contains %s, half of a surrogate pair without the other half: not a character`, esc)
	}
	files := make([]pyexec.File, 0, len(list))
	for i, item := range list {
		var f wire.File
		if err := json.Unmarshal(item, &f); err != nil || string(item) == "null" {
			return nil, pyexec.Errorf(pyexec.CodeInvalidRequest,
				`"files"[%d] must be an object with a string "path" and "content"`, i)
		}
		if err := pyexec.CheckFilePath(f.Path); err != nil {
			return nil, pyexec.Errorf(pyexec.CodeInvalidRequest, "%v", err)
		}
		data, err := f.Decode()
		if err != nil {
			return nil, pyexec.Errorf(pyexec.CodeInvalidRequest, "%v", err)
		}
		files = append(files, pyexec.File{Path: f.Path, Content: data})
	}
	if err := pyexec.CheckFiles(files, s.cfg.MaxInputFiles, s.cfg.MaxInputBytes); err != nil {
		return nil, err
	}
	return files, nil
}

// checkArgs accepts the JSON text of "args": a JSON object, or nothing
// (left out or null, which is the same: main is called with no arguments).
// Which members main accepts is decided by the harness, which has the
// script; here only the shape is checked, and a lone surrogate, which the
// harness's decoder would read other than Go's does, is refused as it is in
// a script.
func checkArgs(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, pyexec.Errorf(pyexec.CodeInvalidRequest, `"args" must be a JSON object of main()'s keyword arguments`)
	}
	if esc, ok := pyexec.LoneSurrogate(raw); ok {
		return nil, pyexec.Errorf(pyexec.CodeInvalidRequest,
			`"args" contains %s, half of a surrogate pair without the other half: not a character`, esc)
	}
	return raw, nil
}

// checkTimeout accepts a timeout in (0, MaxTimeout] seconds.
func (s *server) checkTimeout(secs float64) (time.Duration, error) {
	most := s.cfg.MaxTimeout.Seconds()
	if !(secs > 0) || secs > most {
		return 0, pyexec.Errorf(pyexec.CodeInvalidRequest,
			`"timeout" must be more than 0 and at most %s seconds`, strconv.FormatFloat(most, 'f', -1, 64))
	}
	// A millisecond is the finest limit a worker keeps; a tinier one
	// would read "0s" in the answer.
	return max(time.Duration(secs*float64(time.Second)), time.Millisecond), nil
}

func (s *server) checkScript(script string) error {
	if len(script) > s.cfg.MaxScriptBytes {
		return pyexec.Errorf(pyexec.CodeValidation,
			"script is %d bytes, over the %d-byte limit", len(script), s.cfg.MaxScriptBytes)
	}
	return nil
}

func (s *server) execute(c *fiber.Ctx) error {
	// The raw body: fiber's c.Body() would decompress it according to
	// Content-Encoding, with no limit on the result (requireJSON refuses
	// any encoding, and this keeps it so should the order ever change).
	req, err := s.decodeRequest(c.Request().Body())
	if err != nil {
		return err
	}
	req.ID = requestID(c)
	ctx, stop := watchPeerClose(s.cfg.BaseContext, c.Context().Conn())
	defer stop()
	resp, err := s.run(ctx, req)
	if err != nil {
		if errors.Is(context.Cause(ctx), errClientGone) {
			c.Locals(localOutcome, "client_gone")
			// Nobody is listening; the status is for the log only.
			return c.SendStatus(499)
		}
		return err
	}
	status := fiber.StatusOK
	if resp.Error != nil {
		status = StatusOf(resp.Error.Code)
		c.Locals(localOutcome, string(resp.Error.Code))
	}
	out := wire.NewResponse(resp, req.ID)
	return c.Status(status).JSON(out)
}

// run is the way every script takes to the executor, from /execute and
// from /mcp alike.
func (s *server) run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	resp, err := s.exec.Execute(ctx, req)
	if err != nil {
		// The base context ends when a graceful shutdown runs out of time:
		// the script was cut off by the service, not failed by it.
		if s.cfg.BaseContext.Err() != nil {
			return nil, errShuttingDown(err)
		}
		return nil, err
	}
	s.cfg.Metrics.observeRun(resp.QueueWait, resp.Duration)
	if resp.Error != nil && !pyexec.IsScriptCode(resp.Error.Code) {
		return nil, &pyexec.Error{Code: pyexec.CodeInternal, Message: internalMessage,
			Err: fmt.Errorf("executor answered with non-script code %q: %v", resp.Error.Code, resp.Error)}
	}
	return resp, nil
}

// healthz answers 200 with the pool and enforced limits, or 503 while no
// worker can be started.
func (s *server) healthz(c *fiber.Ctx) error {
	st := s.health()
	status := fiber.StatusOK
	word := "ok"
	if !st.Ready {
		status, word = fiber.StatusServiceUnavailable, "unavailable"
	}
	return c.Status(status).JSON(struct {
		Word string `json:"status"`
		pyexec.Status
	}{word, st})
}
