package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pyexec/pyexec"
)

// ColdConfig configures a Cold executor.
type ColdConfig struct {
	// Spawn starts a worker. Required.
	Spawn SpawnFunc
	// Concurrency bounds the scripts running at once. Required.
	Concurrency int
	// QueueTimeout bounds the wait for a free slot. Required.
	QueueTimeout time.Duration
	// SpawnTimeout bounds one spawn. Required.
	SpawnTimeout time.Duration
	// OnSpawn, when set, is told how long each spawn took and whether it
	// failed (for metrics). It must not block.
	OnSpawn func(d time.Duration, err error)
}

// Cold runs every script on a worker started for it alone, with no worker
// kept ready: the baseline the warm pool is measured against, and the mode
// for hosts that cannot spare idle interpreters. It implements
// pyexec.Executor and is safe for concurrent use.
type Cold struct {
	cfg   ColdConfig
	spawn *spawner
	slots chan struct{}
	busy  atomic.Int64

	closing chan struct{}
	once    sync.Once
}

// NewCold builds a Cold executor.
func NewCold(cfg ColdConfig) (*Cold, error) {
	switch {
	case cfg.Spawn == nil:
		return nil, errors.New("new cold executor: no spawn function")
	case cfg.Concurrency <= 0 || cfg.QueueTimeout <= 0 || cfg.SpawnTimeout <= 0:
		return nil, fmt.Errorf("new cold executor: Concurrency, QueueTimeout and SpawnTimeout must be set")
	}
	return &Cold{
		cfg:     cfg,
		spawn:   &spawner{spawn: cfg.Spawn, onSpawn: cfg.OnSpawn},
		slots:   make(chan struct{}, cfg.Concurrency),
		closing: make(chan struct{}),
	}, nil
}

// Start does nothing: no worker is kept ready.
func (c *Cold) Start() {}

// WaitReady starts one worker and kills it, so that a host that cannot run
// the sandbox is reported at start-up rather than on the first request.
func (c *Cold) WaitReady(ctx context.Context) error {
	w, err := c.spawn.start(ctx)
	if err != nil {
		return fmt.Errorf("wait ready: %w", err)
	}
	w.Kill()
	return nil
}

// Execute starts a worker, runs the script on it and kills it once the
// answer has left; see pyexec.Executor.
func (c *Cold) Execute(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	start := time.Now()
	qctx, cancel := context.WithTimeout(ctx, c.cfg.QueueTimeout)
	defer cancel()
	select {
	case <-c.closing:
		return nil, overloaded("the service is shutting down", ErrClosed)
	default:
	}
	select {
	case c.slots <- struct{}{}:
	case <-qctx.Done():
		return nil, waitError(ctx, qctx.Err(), c.cfg.QueueTimeout)
	}
	c.busy.Add(1)
	done := func() {
		c.busy.Add(-1)
		<-c.slots
	}
	sctx, scancel := context.WithTimeout(ctx, c.cfg.SpawnTimeout)
	w, err := c.spawn.start(sctx)
	scancel()
	if err != nil {
		done()
		return nil, spawnError(ctx, err)
	}
	// The worker is killed after the answer has left, as in the pool; its
	// slot stays taken until it is gone, so Close can wait for it.
	defer time.AfterFunc(retireDelay, func() {
		w.Kill()
		done()
	})
	wait := time.Since(start)
	resp, err := w.Run(ctx, req)
	if err != nil {
		return nil, runError(ctx, err)
	}
	resp.QueueWait = wait
	return resp, nil
}

// Status reports the executor's state. It is ready until it closes: it
// needs no standing worker, and a failed spawn (reported in the status)
// may be followed by a good one on the next request, which a load balancer
// would never send if the failure took it out of service.
func (c *Cold) Status() (pyexec.PoolStatus, bool, string) {
	s := pyexec.PoolStatus{Busy: int(c.busy.Load())}
	c.spawn.status(&s)
	select {
	case <-c.closing:
		return s, false, "shutting down"
	default:
	}
	return s, true, ""
}

// Close refuses new requests and waits for every running script's worker
// to be killed.
func (c *Cold) Close() {
	c.once.Do(func() {
		close(c.closing)
		for range cap(c.slots) {
			c.slots <- struct{}{}
		}
	})
}
