// Package pool keeps sandboxed workers warm and hands each script to one of
// them. It wraps puddle: a background loop tops the pool up, a worker that
// ran user code is destroyed after that one script, and a request that finds
// no free worker within the queue timeout is refused as overloaded.
package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/puddle/v2"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
)

// Worker is one sandboxed interpreter, as package jail provides it.
type Worker interface {
	// Run executes one script; see jail.Worker.Run.
	Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error)
	// Reusable is true when the last Run ran no user code.
	Reusable() bool
	// Alive is false once the worker's process has exited.
	Alive() bool
	// Kill ends the worker; safe to call twice.
	Kill()
}

// readier is implemented by workers that need time to get ready again
// after a script before they can serve the next (fork isolation).
type readier interface {
	AwaitReady(ctx context.Context) error
}

// SpawnFunc starts one worker and returns once it is ready. It must honour
// its own start-up timeout; ctx cancellation only aborts the wait.
type SpawnFunc func(ctx context.Context) (Worker, error)

// Config configures a Pool. Zero fields take the defaults of New.
type Config struct {
	// Size is the number of warm workers. 0 disables the pool: every
	// request spawns a fresh worker (the cold baseline).
	Size int
	// Spawn starts a worker. Required.
	Spawn SpawnFunc
	// QueueTimeout bounds the wait for a free worker (default 10s).
	QueueTimeout time.Duration
	// SpawnTimeout bounds one background spawn (default 60s).
	SpawnTimeout time.Duration
	// MaxAge recycles idle workers older than this (default 10m).
	MaxAge time.Duration
	// SpawnConcurrency is how many workers are started at once in the
	// background (default: Size, so every empty slot refills at once).
	SpawnConcurrency int
	// ColdConcurrency bounds concurrent requests when Size is 0
	// (default: twice the number of CPUs).
	ColdConcurrency int
	// MaintainInterval is how often idle workers are checked (default 1s).
	MaintainInterval time.Duration
	// OnSpawn, when set, is told how long each spawn took and whether it
	// failed (for metrics). It must not block.
	OnSpawn func(d time.Duration, err error)
}

func (c *Config) setDefaults() {
	if c.QueueTimeout == 0 {
		c.QueueTimeout = 10 * time.Second
	}
	if c.SpawnTimeout == 0 {
		c.SpawnTimeout = 60 * time.Second
	}
	if c.MaxAge == 0 {
		c.MaxAge = 10 * time.Minute
	}
	if c.SpawnConcurrency == 0 {
		c.SpawnConcurrency = c.Size
	}
	if c.ColdConcurrency == 0 {
		c.ColdConcurrency = 2 * runtime.NumCPU()
	}
	if c.MaintainInterval == 0 {
		c.MaintainInterval = time.Second
	}
}

// ErrClosed is returned by Execute after Close.
var ErrClosed = errors.New("pool is closed")

// Pool runs scripts on warm workers. It implements pyexec.Executor and is
// safe for concurrent use.
type Pool struct {
	cfg  Config
	log  *zap.Logger
	warm *puddle.Pool[Worker] // nil when Size is 0
	cold chan struct{}        // slots for cold requests when Size is 0

	kick    chan struct{}
	closing chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	spawned     atomic.Int64
	failures    atomic.Int64
	recycled    atomic.Int64
	coldBusy    atomic.Int64
	mu          sync.Mutex
	lastErr     error // last spawn error, nil after a success
	lastErrTime time.Time
}

// New builds a pool. Call Start to begin warming it.
func New(cfg Config, log *zap.Logger) (*Pool, error) {
	cfg.setDefaults()
	if cfg.Spawn == nil {
		return nil, errors.New("new pool: no spawn function")
	}
	if cfg.Size < 0 {
		return nil, fmt.Errorf("new pool: negative size %d", cfg.Size)
	}
	p := &Pool{
		cfg: cfg, log: log,
		kick: make(chan struct{}, cfg.SpawnConcurrency), closing: make(chan struct{}),
	}
	if cfg.Size == 0 {
		p.cold = make(chan struct{}, cfg.ColdConcurrency)
		return p, nil
	}
	warm, err := puddle.NewPool(&puddle.Config[Worker]{
		Constructor: p.construct,
		Destructor:  func(w Worker) { w.Kill() },
		MaxSize:     int32(cfg.Size),
	})
	if err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	p.warm = warm
	return p, nil
}

// construct is the puddle constructor. Its life is bounded by SpawnTimeout,
// never by the context of whichever request happened to trigger it.
func (p *Pool) construct(ctx context.Context) (Worker, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.SpawnTimeout)
	defer cancel()
	start := time.Now()
	w, err := p.cfg.Spawn(sctx)
	p.recordSpawn(time.Since(start), err)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (p *Pool) recordSpawn(d time.Duration, err error) {
	if p.cfg.OnSpawn != nil {
		p.cfg.OnSpawn(d, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failures.Add(1)
		p.lastErr, p.lastErrTime = err, time.Now()
		return
	}
	p.spawned.Add(1)
	p.lastErr = nil
}

// Start begins filling the pool in the background. It returns at once.
func (p *Pool) Start() {
	if p.warm == nil {
		return
	}
	for i := 0; i < p.cfg.SpawnConcurrency; i++ {
		p.wg.Add(1)
		go p.fill()
	}
	p.wg.Add(1)
	go p.maintain()
}

// WaitReady blocks until at least one worker is ready (or, for a cold pool,
// one spawn has succeeded), ctx ends, or the first spawn fails.
func (p *Pool) WaitReady(ctx context.Context) error {
	if p.warm == nil {
		start := time.Now()
		w, err := p.cfg.Spawn(ctx)
		p.recordSpawn(time.Since(start), err)
		if err != nil {
			return fmt.Errorf("wait ready: %w", err)
		}
		w.Kill()
		return nil
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st := p.warm.Stat()
		if st.IdleResources() > 0 || st.AcquiredResources() > 0 {
			return nil
		}
		if err := p.lastSpawnError(); err != nil {
			return fmt.Errorf("wait ready: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait ready: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (p *Pool) lastSpawnError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// fill keeps creating workers while the pool is below its size. After a
// failed spawn it backs off, so a broken host is not hammered.
func (p *Pool) fill() {
	defer p.wg.Done()
	backoff := time.Duration(0)
	for {
		if !p.topUpOnce(&backoff) {
			select {
			case <-p.closing:
				return
			case <-p.kick:
			case <-time.After(p.cfg.MaintainInterval):
			}
		}
		if backoff > 0 {
			select {
			case <-p.closing:
				return
			case <-time.After(backoff):
			}
		}
	}
}

// topUpOnce starts one worker if there is room. It reports whether it did
// something worth trying again at once.
func (p *Pool) topUpOnce(backoff *time.Duration) bool {
	select {
	case <-p.closing:
		return false
	default:
	}
	if int(p.warm.Stat().TotalResources()) >= p.cfg.Size {
		return false
	}
	err := p.warm.CreateResource(context.Background())
	switch {
	case err == nil:
		*backoff = 0
		if int(p.warm.Stat().TotalResources()) < p.cfg.Size {
			p.nudge() // more room: let another filler start one in parallel
		}
		return true
	case errors.Is(err, puddle.ErrNotAvailable), errors.Is(err, puddle.ErrClosedPool):
		return false
	default:
		if *backoff == 0 {
			*backoff = 100 * time.Millisecond
		} else if *backoff < 10*time.Second {
			*backoff *= 2
		}
		p.log.Warn("spawn failed", zap.Error(err), zap.Duration("retry_in", *backoff))
		return true
	}
}

// maintain recycles idle workers that are too old or have died.
func (p *Pool) maintain() {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.MaintainInterval)
	defer t.Stop()
	for {
		select {
		case <-p.closing:
			return
		case <-t.C:
		}
		// Age retires at most one worker per tick, and only while no other
		// is starting: workers started together (the whole pool at
		// start-up) must not all be replaced at once, which would leave no
		// warm worker while they spawn.
		st := p.warm.Stat()
		retired := st.ConstructingResources() > 0 || int(st.TotalResources()) < p.cfg.Size
		for _, res := range p.warm.AcquireAllIdle() {
			w := res.Value()
			switch {
			case !w.Alive():
				p.log.Warn("idle worker died; replacing it")
				p.recycled.Add(1)
				res.Destroy()
				p.nudge()
			case !retired && time.Since(res.CreationTime()) > p.ageLimit(res.CreationTime()):
				retired = true
				p.recycled.Add(1)
				res.Destroy()
				p.nudge()
			default:
				res.ReleaseUnused()
			}
		}
	}
}

// ageLimit is MaxAge shortened by up to a fifth, by an amount derived from
// the worker's creation time, so that workers started together do not come
// of age together.
func (p *Pool) ageLimit(created time.Time) time.Duration {
	spread := p.cfg.MaxAge / 5
	if spread <= 0 {
		return p.cfg.MaxAge
	}
	return p.cfg.MaxAge - time.Duration(created.UnixNano()%int64(spread))
}

// nudge wakes a filler without blocking.
func (p *Pool) nudge() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Execute runs one script on a warm worker (or a fresh one when the pool
// size is 0). It blocks until the script ends; see pyexec.Executor.
func (p *Pool) Execute(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	select {
	case <-p.closing:
		return nil, overloaded("the service is shutting down", ErrClosed)
	default:
	}
	if p.warm == nil {
		return p.executeCold(ctx, req)
	}
	start := time.Now()
	qctx, cancel := context.WithTimeout(ctx, p.cfg.QueueTimeout)
	defer cancel()
	// A worker found dead on acquisition (killed from outside while idle)
	// ran nothing: it is replaced and the request tries the next one.
	for attempt := 0; ; attempt++ {
		res, err := p.warm.Acquire(qctx)
		if err != nil {
			return nil, p.acquireError(ctx, err)
		}
		w := res.Value()
		if !w.Alive() && attempt < 3 {
			res.Destroy()
			p.nudge()
			continue
		}
		wait := time.Since(start)
		resp, err := w.Run(ctx, req)
		switch {
		case err != nil || !w.Reusable():
			p.retire(res)
		default:
			p.release(res)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if attempt < 3 {
				p.log.Warn("worker failed before running the script; retrying", zap.Error(err))
				continue
			}
			return nil, fmt.Errorf("execute: %w", err)
		}
		resp.QueueWait = wait
		return resp, nil
	}
}

// retireDelay is how long a used worker is left before it is killed and
// replaced. Its answer is on its way to the client meanwhile: the kill,
// the kernel tearing the jail down and the start of the next worker (the
// service forks a process and moves it into cgroups, which briefly holds
// locks every fork in the system needs) would otherwise compete with
// sending it. Against a spawn of about a quarter of a second, the delay
// costs nothing.
const retireDelay = 2 * time.Millisecond

// retire destroys a used worker and starts its replacement, after
// retireDelay. The worker counts as acquired until then, so Close waits.
func (p *Pool) retire(res *puddle.Resource[Worker]) {
	time.AfterFunc(retireDelay, func() {
		res.Destroy()
		p.nudge()
	})
}

// release returns a reusable worker to the pool. A worker that needs time
// to get ready again is returned only once it is, in the background, so an
// idle worker in the pool is always one that can start a script at once.
func (p *Pool) release(res *puddle.Resource[Worker]) {
	r, ok := res.Value().(readier)
	if !ok {
		res.Release()
		return
	}
	// Close waits for this goroutine too: the worker counts as acquired
	// until it is released or destroyed.
	go func() {
		if err := r.AwaitReady(context.Background()); err != nil {
			p.log.Warn("worker did not get ready again; replacing it", zap.Error(err))
			res.Destroy()
			p.nudge()
			return
		}
		res.Release()
	}()
}

func (p *Pool) acquireError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		return overloaded(fmt.Sprintf("no worker became free within %s", p.cfg.QueueTimeout), err)
	case errors.Is(err, puddle.ErrClosedPool):
		return overloaded("the service is shutting down", err)
	default:
		return &pyexec.Error{Code: pyexec.CodeInternal, Message: "could not start a sandbox", Err: err}
	}
}

func overloaded(msg string, err error) error {
	return &pyexec.Error{Code: pyexec.CodeOverloaded, Message: msg, Err: err}
}

func (p *Pool) executeCold(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	start := time.Now()
	qctx, cancel := context.WithTimeout(ctx, p.cfg.QueueTimeout)
	defer cancel()
	select {
	case p.cold <- struct{}{}:
	case <-qctx.Done():
		return nil, p.acquireError(ctx, qctx.Err())
	}
	p.coldBusy.Add(1)
	done := func() {
		p.coldBusy.Add(-1)
		<-p.cold
	}
	sctx, scancel := context.WithTimeout(ctx, p.cfg.SpawnTimeout)
	spawnStart := time.Now()
	w, err := p.cfg.Spawn(sctx)
	scancel()
	p.recordSpawn(time.Since(spawnStart), err)
	if err != nil {
		done()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &pyexec.Error{Code: pyexec.CodeInternal, Message: "could not start a sandbox", Err: err}
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
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("execute: %w", err)
	}
	resp.QueueWait = wait
	return resp, nil
}

// Status reports the pool's state. Ready is false while no worker exists
// and the last attempt to start one failed.
func (p *Pool) Status() (pyexec.PoolStatus, bool, string) {
	s := pyexec.PoolStatus{
		Size:          p.cfg.Size,
		Spawned:       p.spawned.Load(),
		SpawnFailures: p.failures.Load(),
		Recycled:      p.recycled.Load(),
	}
	lastErr := p.lastSpawnError()
	if lastErr != nil {
		s.LastSpawnErr = lastErr.Error()
	}
	live := 0
	if p.warm != nil {
		st := p.warm.Stat()
		s.Idle = int(st.IdleResources())
		s.Busy = int(st.AcquiredResources())
		s.Starting = int(st.ConstructingResources())
		live = s.Idle + s.Busy
	} else {
		s.Busy = int(p.coldBusy.Load())
		live = 1 // a cold pool needs no standing worker
	}
	select {
	case <-p.closing:
		return s, false, "shutting down"
	default:
	}
	if lastErr != nil && live == 0 {
		return s, false, "no worker can be started: " + lastErr.Error()
	}
	if p.warm != nil && live == 0 && p.spawned.Load() == 0 {
		return s, false, "warming up"
	}
	return s, true, ""
}

// Recycled is the number of idle workers replaced for age.
func (p *Pool) Recycled() int64 { return p.recycled.Load() }

// Close stops refilling, refuses new requests, waits for requests in flight
// to return their workers and kills every worker.
func (p *Pool) Close() {
	p.once.Do(func() {
		close(p.closing)
		p.wg.Wait()
		if p.warm != nil {
			p.warm.Close()
			return
		}
		// Every cold slot free: no cold worker is left running.
		for range cap(p.cold) {
			p.cold <- struct{}{}
		}
	})
}
