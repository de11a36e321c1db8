// Package pyexec holds the vocabulary shared by every part of the service:
// the execution request and response, the error codes of the public API, the
// Executor interface that the HTTP layer calls, and the status it reports.
//
// It imports nothing from the rest of the module, so every other package can
// depend on it without cycles.
package pyexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Code is a stable, machine-readable error type returned to clients in
// error.type. The set is part of the public API; see the README's error table.
type Code string

// Error codes. The HTTP status of each is decided in one place, in package api.
const (
	CodeInvalidRequest       Code = "invalid_request"
	CodeValidation           Code = "validation_error"
	CodePayloadTooLarge      Code = "payload_too_large"
	CodeHeaderTooLarge       Code = "header_too_large"
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeRequestTimeout       Code = "request_timeout"
	CodeRuntime              Code = "runtime_error"
	CodeInvalidResult        Code = "invalid_result"
	CodeTimeout              Code = "timeout"
	CodeMemoryLimit          Code = "memory_limit"
	CodeOutputLimit          Code = "output_limit"
	CodeSandbox              Code = "sandbox_error"
	CodeUnauthorized         Code = "unauthorized"
	CodeForbidden            Code = "forbidden"
	CodeRateLimited          Code = "rate_limited"
	CodeNotFound             Code = "not_found"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeOverloaded           Code = "overloaded"
	CodeInternal             Code = "internal_error"
)

// ErrNotRun is wrapped by a worker's Run error when the script never
// reached the worker (it had died while idle, or its start was not
// complete): the script may be tried on another worker.
var ErrNotRun = errors.New("the script did not reach the worker")

// Codes lists every Code, in the order of the constants above. Tests that
// must cover each code (its HTTP status, its documentation) iterate it, and
// a test of this package checks it against the constants, so a new code
// cannot be left out silently.
func Codes() []Code {
	return []Code{
		CodeInvalidRequest, CodeValidation, CodePayloadTooLarge, CodeHeaderTooLarge,
		CodeUnsupportedMediaType, CodeRequestTimeout, CodeRuntime, CodeInvalidResult,
		CodeTimeout, CodeMemoryLimit, CodeOutputLimit, CodeSandbox, CodeUnauthorized,
		CodeForbidden, CodeRateLimited, CodeNotFound, CodeMethodNotAllowed, CodeOverloaded, CodeInternal,
	}
}

// IsScriptCode reports whether c is a code that a script's own behaviour can
// produce (as opposed to a code about the HTTP request or the platform). A
// worker may report only these; anything else it claims is treated as a
// sandbox failure.
func IsScriptCode(c Code) bool {
	switch c {
	case CodeValidation, CodeRuntime, CodeInvalidResult, CodeTimeout,
		CodeMemoryLimit, CodeOutputLimit, CodeSandbox:
		return true
	}
	return false
}

// Error is the one application error type. Message is safe to show to the
// client; Err, when set, is the internal cause and is only logged.
type Error struct {
	Code      Code
	Message   string
	Traceback string
	Err       error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a formatted client-facing message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none (an unexpected failure of the service).
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Request is one script to run. Timeout is already validated and defaulted by
// the time an Executor sees it.
type Request struct {
	// ID identifies the request in logs and in the worker protocol.
	ID      string
	Script  string
	Timeout time.Duration
	// Args, when set, is a JSON object whose members main is called with
	// as keyword arguments; nil calls main with none.
	Args json.RawMessage
	// Files are written into the script's working directory before it
	// starts (checked with CheckFiles).
	Files []File
}

// Response is the outcome of running a script. Error is nil on success; when
// it is set, Result is nil. Stdout and Stderr are kept whatever the outcome.
type Response struct {
	Result          json.RawMessage
	Stdout          string
	Stderr          string
	StdoutTruncated bool
	StderrTruncated bool
	Error           *Error
	// Files are what the script left under output/ in its working
	// directory, sorted by path; FilesLeftOut are those not returned, with
	// the reason, and FilesTruncated says output/ held more than was
	// looked at (so not every file left out is named).
	Files          []OutputFile
	FilesLeftOut   []LeftOutFile
	FilesTruncated bool
	// Figures are the matplotlib figures still open when main returned,
	// in the order they were made.
	Figures []Figure
	// Duration is the wall time spent in the sandbox, from sending the
	// script to receiving the answer.
	Duration time.Duration
	// QueueWait is how long the request waited for a free worker.
	QueueWait time.Duration
}

// Figure is one matplotlib figure a script left open, drawn as PNG.
type Figure struct {
	// PNG is the image; nil when the figure was omitted.
	PNG []byte
	// Width and Height are in pixels (for an omitted figure, as the
	// script sized it).
	Width, Height int
	// Omitted says why the figure was not drawn (a limit it is over).
	Omitted string
}

// Executor runs scripts. Implementations are safe for concurrent use.
//
// Execute blocks until the script has finished, the request's timeout has
// passed, or ctx is done. Outcomes caused by the script (runtime errors,
// timeouts, memory limits...) come back in Response.Error with a nil error;
// a non-nil error means no script outcome exists (overloaded, shut down,
// internal failure) and carries an *Error code where one applies.
type Executor interface {
	Execute(ctx context.Context, req Request) (*Response, error)
}

// PoolStatus is a snapshot of the worker pool.
type PoolStatus struct {
	Size          int   `json:"size"`
	Idle          int   `json:"idle"`
	Busy          int   `json:"busy"`
	Starting      int   `json:"starting"`
	Spawned       int64 `json:"spawned"`
	SpawnFailures int64 `json:"spawn_failures"`
	// JailedProcesses counts every process in the workers' cgroups
	// (-1 without cgroups, where it cannot be known).
	JailedProcesses int `json:"jailed_processes"`
	// Recycled counts idle workers replaced for age or found dead.
	Recycled     int64  `json:"recycled"`
	LastSpawnErr string `json:"last_spawn_error,omitempty"`
}

// Limits describes the limits actually enforced on each script, so that
// /health never claims more than the host gives.
type Limits struct {
	// Cgroup is "v1", "v2" or "none" (rlimits only).
	Cgroup         string  `json:"cgroup"`
	MemoryMB       int     `json:"memory_mb"`
	MemoryEnforcer string  `json:"memory_enforced_by"`
	PidsMax        int     `json:"pids_max"`
	PidsEnforcer   string  `json:"pids_enforced_by"`
	TmpfsMB        int     `json:"tmpfs_mb"`
	CPUs           int     `json:"cpus"`
	CPUEnforcer    string  `json:"cpus_enforced_by"`
	Network        string  `json:"network"`
	Seccomp        string  `json:"seccomp"`
	TimeoutDefault float64 `json:"timeout_default_s"`
	TimeoutMax     float64 `json:"timeout_max_s"`
	MaxScriptBytes int     `json:"max_script_bytes"`
	MaxOutputBytes int     `json:"max_output_bytes"`
	// Input files a request may carry and output files an answer
	// returns: how many, and how many bytes in all.
	MaxInputFiles       int      `json:"max_input_files"`
	MaxInputBytes       int      `json:"max_input_bytes"`
	MaxOutputFiles      int      `json:"max_output_files"`
	MaxOutputFilesBytes int      `json:"max_output_files_bytes"`
	Warnings            []string `json:"warnings,omitempty"`
}

// Status is what /health reports.
type Status struct {
	// Ready is false while no worker can be started.
	Ready      bool       `json:"ready"`
	Reason     string     `json:"reason,omitempty"`
	Isolation  string     `json:"isolation"`
	Validation string     `json:"validation"`
	Pool       PoolStatus `json:"pool"`
	Limits     Limits     `json:"limits"`
	// Python is the scripts' interpreter version, and Packages the
	// distributions installed for it, by name, with their versions.
	Python   string            `json:"python,omitempty"`
	Packages map[string]string `json:"packages,omitempty"`
}
