// Package pool hands each script to a sandboxed worker. Pool keeps workers
// warm: it wraps puddle, a background loop tops it up, a worker that may
// not run another script is destroyed after its one, and a request that
// finds no free worker within the queue timeout is refused as overloaded.
// Cold starts a worker for every script instead.
package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/puddle/v2"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
)

// Config configures a Pool. Size, Spawn, QueueTimeout, SpawnTimeout and
// MaxAge are required; the other fields have defaults.
type Config struct {
	// Size is the number of warm workers.
	Size int
	// Spawn starts a worker.
	Spawn SpawnFunc
	// QueueTimeout bounds the wait for a free worker.
	QueueTimeout time.Duration
	// SpawnTimeout bounds one background spawn.
	SpawnTimeout time.Duration
	// MaxAge recycles idle workers older than this.
	MaxAge time.Duration
	// SpawnConcurrency is how many workers are started at once in the
	// background (default: Size, so every empty slot refills at once).
	SpawnConcurrency int
	// MaintainInterval is how often idle workers are checked (default 1s).
	MaintainInterval time.Duration
	// OnSpawn, when set, is told how long each spawn took and whether it
	// failed (for metrics). It must not block.
	OnSpawn func(d time.Duration, err error)
}

func (c *Config) check() error {
	switch {
	case c.Spawn == nil:
		return errors.New("no spawn function")
	case c.Size <= 0 || c.QueueTimeout <= 0 || c.SpawnTimeout <= 0 || c.MaxAge <= 0:
		return errors.New("Size, QueueTimeout, SpawnTimeout and MaxAge must be set")
	}
	if c.SpawnConcurrency == 0 {
		c.SpawnConcurrency = c.Size
	}
	if c.MaintainInterval == 0 {
		c.MaintainInterval = time.Second
	}
	return nil
}

// Pool runs scripts on warm workers. It implements pyexec.Executor and is
// safe for concurrent use.
type Pool struct {
	cfg   Config
	log   *zap.Logger
	warm  *puddle.Pool[*slot]
	queue *queue
	spawn *spawner

	kick    chan struct{}
	closing chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	recycled atomic.Int64
	// dying counts the workers being killed (see destroy); Close waits
	// for them.
	dying sync.WaitGroup
}

// New builds a pool. Call Start to begin warming it.
func New(cfg Config, log *zap.Logger) (*Pool, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	p := &Pool{
		cfg: cfg, log: log,
		spawn: &spawner{spawn: cfg.Spawn, onSpawn: cfg.OnSpawn},
		kick:  make(chan struct{}, cfg.SpawnConcurrency), closing: make(chan struct{}),
	}
	warm, err := puddle.NewPool(&puddle.Config[*slot]{
		Constructor: p.construct,
		Destructor:  p.destroy,
		MaxSize:     int32(cfg.Size),
	})
	if err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	p.warm = warm
	p.queue = &queue{warm: warm}
	return p, nil
}

// construct is the puddle constructor. Its life is bounded by SpawnTimeout,
// never by the context of whichever request happened to trigger it.
func (p *Pool) construct(ctx context.Context) (*slot, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.SpawnTimeout)
	defer cancel()
	w, err := p.spawn.start(sctx)
	if err != nil {
		return nil, err
	}
	return &slot{Worker: w, ready: time.Now()}, nil
}

// slot is a worker as the pool holds it: with the time it became ready.
// Workers are made concurrently, so the order their spawns began in is
// not the order they became ready in.
type slot struct {
	Worker
	ready time.Time
}

// destroy is the puddle destructor. The slot is free as soon as the worker
// is told to end: its teardown (its memory freed, which takes long for a
// large one on a busy machine) must not hold back the worker that
// replaces it. Close waits for it.
func (p *Pool) destroy(s *slot) {
	p.dying.Add(1)
	go func() {
		defer p.dying.Done()
		s.Kill()
	}()
}

// discard takes a used or dead worker out of the pool, kills it and wakes a
// filler to replace it. The slot is free when discard returns: puddle's
// Destroy frees it later, from a goroutine of its own, and a filler woken
// before that found the pool still full and slept until the next
// maintenance tick.
func (p *Pool) discard(res *puddle.Resource[*slot]) {
	p.destroy(res.Value()) // counted in p.dying before the slot is free, for Close
	res.Hijack()
	p.nudge()
}

// Start begins filling the pool in the background. It returns at once.
func (p *Pool) Start() {
	for i := 0; i < p.cfg.SpawnConcurrency; i++ {
		p.wg.Add(1)
		go p.fill()
	}
	p.wg.Add(1)
	go p.maintain()
}

// WaitReady blocks until at least one worker is ready, ctx ends, or the
// first spawn fails.
func (p *Pool) WaitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st := p.warm.Stat()
		if st.IdleResources() > 0 || st.AcquiredResources() > 0 {
			return nil
		}
		if err := p.spawn.lastError(); err != nil {
			return fmt.Errorf("wait ready: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait ready: %w", ctx.Err())
		case <-t.C:
		}
	}
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
	// Whatever happened, a worker idle while a request waits goes to it:
	// a spawn that found no room held a slot's token for a moment, and a
	// request that looked then found no worker it could take.
	defer p.queue.handOut()
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
		if p.warm.Stat().TotalResources() == 0 {
			// No worker is left or on its way: the requests waiting
			// learn why now rather than at their queue timeout.
			p.queue.fail(err)
		}
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
				p.discard(res)
			case !retired && time.Since(res.CreationTime()) > p.ageLimit(res.CreationTime()):
				retired = true
				p.recycled.Add(1)
				p.discard(res)
			default:
				res.ReleaseUnused()
			}
		}
		p.queue.handOut()
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

// Execute runs one script on a warm worker. It blocks until the script
// ends; see pyexec.Executor.
func (p *Pool) Execute(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	select {
	case <-p.closing:
		return nil, overloaded("the service is shutting down", ErrClosed)
	default:
	}
	start := time.Now()
	qctx, cancel := context.WithTimeout(ctx, p.cfg.QueueTimeout)
	defer cancel()
	// A worker found dead on acquisition (killed from outside while idle)
	// ran nothing: it is replaced and the request tries the next one.
	for attempt := 0; ; attempt++ {
		res, err := p.queue.take(qctx, p.closing)
		if err != nil {
			return nil, waitError(ctx, err, p.cfg.QueueTimeout)
		}
		w := res.Value()
		if !w.Alive() && attempt < 3 {
			p.discard(res)
			continue
		}
		wait := time.Since(start)
		resp, err := w.Run(ctx, req)
		p.retire(res)
		if err != nil {
			if errors.Is(err, pyexec.ErrNotRun) && ctx.Err() == nil && attempt < 3 {
				p.log.Warn("worker failed before running the script; retrying", zap.Error(err))
				continue
			}
			return nil, runError(ctx, err)
		}
		resp.QueueWait = wait
		return resp, nil
	}
}

// retire destroys a used worker and starts its replacement, after
// retireDelay. The worker counts as acquired until then, so Close waits.
func (p *Pool) retire(res *puddle.Resource[*slot]) {
	time.AfterFunc(retireDelay, func() { p.discard(res) })
}

// Status reports the pool's state. Ready is false while no worker exists
// and the last attempt to start one failed.
func (p *Pool) Status() (pyexec.PoolStatus, bool, string) {
	s := pyexec.PoolStatus{Size: p.cfg.Size, Recycled: p.recycled.Load()}
	lastErr := p.spawn.status(&s)
	st := p.warm.Stat()
	s.Idle = int(st.IdleResources())
	s.Busy = int(st.AcquiredResources())
	s.Starting = int(st.ConstructingResources())
	live := s.Idle + s.Busy
	select {
	case <-p.closing:
		return s, false, "shutting down"
	default:
	}
	if lastErr != nil && live == 0 {
		return s, false, "no worker can be started: " + lastErr.Error()
	}
	if live == 0 && s.Spawned == 0 {
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
		p.warm.Close()
		p.dying.Wait()
	})
}
