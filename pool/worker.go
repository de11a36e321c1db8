package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/pyexec/pyexec"
)

// Worker is one sandboxed interpreter, as package jail provides it. It
// runs one script: once a script has reached it, its process may be the
// script's, so it is never given another.
type Worker interface {
	// Run executes one script; see jail.Worker.Run. An error wrapping
	// pyexec.ErrNotRun means the script never reached the worker, so it may
	// be tried on another.
	Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error)
	// Alive is false once the worker's process has exited.
	Alive() bool
	// Kill ends the worker; safe to call twice.
	Kill()
}

// SpawnFunc starts one worker and returns once it is ready. It must honour
// its own start-up timeout; ctx cancellation only aborts the wait.
type SpawnFunc func(ctx context.Context) (Worker, error)

// ErrClosed is returned by Execute after Close.
var ErrClosed = errors.New("pool is closed")

// retireDelay is how long a used worker is left before it is killed and
// replaced. Its answer is on its way to the client meanwhile: the kill,
// the kernel tearing the jail down and the start of the next worker (the
// service forks a process and moves it into cgroups, which briefly holds
// locks every fork in the system needs) would otherwise compete with
// sending it. Against a spawn of about a quarter of a second, the delay
// costs nothing.
const retireDelay = 2 * time.Millisecond

// spawner starts workers and keeps the counts /health and the metrics
// report: spawns, failures and the last failure.
type spawner struct {
	spawn   SpawnFunc
	onSpawn func(time.Duration, error)

	spawned  atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	lastErr  error // nil after a success
}

// start runs one spawn and records its outcome.
func (s *spawner) start(ctx context.Context) (Worker, error) {
	begin := time.Now()
	w, err := s.spawn(ctx)
	d := time.Since(begin)
	if s.onSpawn != nil {
		s.onSpawn(d, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures.Add(1)
		s.lastErr = err
		return nil, err
	}
	s.spawned.Add(1)
	s.lastErr = nil
	return w, nil
}

func (s *spawner) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// status fills in the spawn counts of a status snapshot and returns the
// last spawn error, nil after a success.
func (s *spawner) status(st *pyexec.PoolStatus) error {
	st.Spawned, st.SpawnFailures = s.spawned.Load(), s.failures.Load()
	err := s.lastError()
	if err != nil {
		st.LastSpawnErr = err.Error()
	}
	return err
}

// waitError is the error of a request that got no worker: ctx's own when
// the client went away, else why no worker was free.
func waitError(ctx context.Context, err error, queueTimeout time.Duration) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		return overloaded(fmt.Sprintf("no worker became free within %s", queueTimeout), err)
	case errors.Is(err, puddle.ErrClosedPool), errors.Is(err, ErrClosed):
		return overloaded("the service is shutting down", err)
	default:
		return spawnError(ctx, err)
	}
}

func overloaded(msg string, err error) error {
	return &pyexec.Error{Code: pyexec.CodeOverloaded, Message: msg, Err: err}
}

// spawnError is the error of a request whose worker could not be started.
func spawnError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &pyexec.Error{Code: pyexec.CodeInternal, Message: "could not start a sandbox", Err: err}
}

// runError is the error of a request whose worker failed before running
// its script.
func runError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("execute: %w", err)
}
