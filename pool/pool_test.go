package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
)

// fakeWorker answers from a function; it records what happened to it.
type fakeWorker struct {
	id       int64
	run      func(ctx context.Context, req pyexec.Request) (*pyexec.Response, error)
	reusable bool
	runs     atomic.Int64
	killed   atomic.Bool
	dead     atomic.Bool
}

func (w *fakeWorker) Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	w.runs.Add(1)
	if w.run != nil {
		return w.run(ctx, req)
	}
	return &pyexec.Response{Result: []byte(fmt.Sprintf("%d", w.id))}, nil
}
func (w *fakeWorker) Reusable() bool { return w.reusable }
func (w *fakeWorker) Alive() bool    { return !w.dead.Load() && !w.killed.Load() }
func (w *fakeWorker) Kill()          { w.killed.Store(true) }

// factory spawns fake workers and remembers them.
type factory struct {
	mu      sync.Mutex
	workers []*fakeWorker
	next    atomic.Int64
	fail    atomic.Bool
	delay   time.Duration
	make    func(w *fakeWorker)
}

func (f *factory) spawn(ctx context.Context) (Worker, error) {
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.fail.Load() {
		return nil, errors.New("no jail here")
	}
	w := &fakeWorker{id: f.next.Add(1)}
	if f.make != nil {
		f.make(w)
	}
	f.mu.Lock()
	f.workers = append(f.workers, w)
	f.mu.Unlock()
	return w, nil
}

func (f *factory) all() []*fakeWorker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeWorker(nil), f.workers...)
}

func newPool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	if cfg.MaintainInterval == 0 {
		cfg.MaintainInterval = 10 * time.Millisecond
	}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = 10 * time.Second
	}
	if cfg.SpawnTimeout == 0 {
		cfg.SpawnTimeout = 10 * time.Second
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 10 * time.Minute
	}
	p, err := New(cfg, zap.NewNop())
	require.NoError(t, err)
	p.Start()
	t.Cleanup(p.Close)
	return p
}

func req() pyexec.Request {
	return pyexec.Request{ID: "r", Script: "def main(): pass", Timeout: time.Second}
}

func TestPool_WarmsUpToSize(t *testing.T) {
	f := &factory{}
	p := newPool(t, Config{Size: 3, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 3 }, 2*time.Second, 5*time.Millisecond)
	s, ready, _ := p.Status()
	assert.True(t, ready)
	assert.Equal(t, 3, s.Size)
	assert.EqualValues(t, 3, s.Spawned)
}

func TestPool_EachWorkerRunsOneScriptAndIsReplaced(t *testing.T) {
	f := &factory{}
	p := newPool(t, Config{Size: 2, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		resp, err := p.Execute(context.Background(), req())
		require.NoError(t, err)
		assert.False(t, seen[string(resp.Result)], "worker %s served twice", resp.Result)
		seen[string(resp.Result)] = true
	}
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 2 }, 2*time.Second, 5*time.Millisecond)
	for _, w := range f.all() {
		assert.LessOrEqual(t, w.runs.Load(), int64(1))
		if w.runs.Load() == 1 {
			assert.True(t, w.killed.Load(), "used worker %d not killed", w.id)
		}
	}
}

func TestPool_WorkerThatRanNoUserCodeServesAgain(t *testing.T) {
	f := &factory{make: func(w *fakeWorker) { w.reusable = true }}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	for i := 0; i < 3; i++ {
		_, err := p.Execute(context.Background(), req())
		require.NoError(t, err)
	}
	ws := f.all()
	require.Len(t, ws, 1)
	assert.EqualValues(t, 3, ws[0].runs.Load())
	assert.False(t, ws[0].killed.Load())
}

func TestPool_OverloadedWhenNoWorkerFreesUp(t *testing.T) {
	release := make(chan struct{})
	f := &factory{make: func(w *fakeWorker) {
		w.run = func(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
			<-release
			return &pyexec.Response{Result: []byte("1")}, nil
		}
	}}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn, QueueTimeout: 50 * time.Millisecond})
	require.NoError(t, p.WaitReady(context.Background()))
	done := make(chan error, 1)
	go func() {
		_, err := p.Execute(context.Background(), req())
		done <- err
	}()
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Busy == 1 }, time.Second, time.Millisecond)
	_, err := p.Execute(context.Background(), req())
	require.Error(t, err)
	assert.Equal(t, pyexec.CodeOverloaded, pyexec.ErrorCode(err))
	close(release)
	require.NoError(t, <-done)
}

func TestPool_QueuedRequestsAreServedWhenWorkersFree(t *testing.T) {
	f := &factory{make: func(w *fakeWorker) {
		w.run = func(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
			time.Sleep(20 * time.Millisecond)
			return &pyexec.Response{Result: []byte("1")}, nil
		}
	}}
	p := newPool(t, Config{Size: 2, Spawn: f.spawn, QueueTimeout: 5 * time.Second})
	require.NoError(t, p.WaitReady(context.Background()))
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Execute(context.Background(), req())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestPool_CancelledRequestKillsItsWorker(t *testing.T) {
	f := &factory{make: func(w *fakeWorker) {
		w.run = func(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
			<-ctx.Done()
			w.Kill()
			return nil, ctx.Err()
		}
	}}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := p.Execute(ctx, req())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, f.all()[0].killed.Load())
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 1 }, 2*time.Second, 5*time.Millisecond)
}

func TestPool_DeadIdleWorkerIsReplaced(t *testing.T) {
	f := &factory{}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	f.all()[0].dead.Store(true)
	resp, err := p.Execute(context.Background(), req())
	require.NoError(t, err)
	assert.NotEqual(t, "1", string(resp.Result), "the dead worker must not serve")
}

func TestPool_RecyclesOldIdleWorkers(t *testing.T) {
	f := &factory{}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn, MaxAge: 30 * time.Millisecond})
	require.NoError(t, p.WaitReady(context.Background()))
	require.Eventually(t, func() bool { return p.Recycled() >= 2 }, 2*time.Second, 5*time.Millisecond)
	assert.True(t, f.all()[0].killed.Load())
}

func TestPool_SpawnFailuresMakeItUnreadyAndBackOff(t *testing.T) {
	f := &factory{}
	f.fail.Store(true)
	p := newPool(t, Config{Size: 2, Spawn: f.spawn, SpawnConcurrency: 1})
	err := p.WaitReady(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no jail here")
	_, ready, reason := p.Status()
	assert.False(t, ready)
	assert.Contains(t, reason, "no worker can be started")

	time.Sleep(300 * time.Millisecond)
	s, _, _ := p.Status()
	// With backoff from 100ms doubling, 300ms allows only a handful of tries.
	assert.LessOrEqual(t, s.SpawnFailures, int64(6))

	f.fail.Store(false)
	require.Eventually(t, func() bool { _, ready, _ := p.Status(); return ready }, 5*time.Second, 10*time.Millisecond)
}

func TestPool_ClosedPoolRefuses(t *testing.T) {
	f := &factory{}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	p.Close()
	_, err := p.Execute(context.Background(), req())
	assert.Equal(t, pyexec.CodeOverloaded, pyexec.ErrorCode(err))
	for _, w := range f.all() {
		assert.True(t, w.killed.Load())
	}
}

func TestPool_QueuedRequestsAreServedInOrder(t *testing.T) {
	gate := make(chan struct{})
	// The order in which the one worker runs the scripts: recorded where
	// they run, since the callers' goroutines may return in any order.
	var mu sync.Mutex
	var order []string
	f := &factory{make: func(w *fakeWorker) {
		w.reusable = true // one worker serves everything, in turn
		w.run = func(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
			if req.ID == "first" {
				<-gate
			} else {
				mu.Lock()
				order = append(order, req.ID)
				mu.Unlock()
			}
			return &pyexec.Response{Result: []byte(`"` + req.ID + `"`)}, nil
		}
	}}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn, QueueTimeout: 5 * time.Second})
	require.NoError(t, p.WaitReady(context.Background()))
	go func() { _, _ = p.Execute(context.Background(), pyexec.Request{ID: "first", Timeout: time.Second}) }()
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Busy == 1 }, time.Second, time.Millisecond)

	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("q%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.Execute(context.Background(), pyexec.Request{ID: id, Timeout: time.Second})
			assert.NoError(t, err)
			if err == nil {
				assert.Equal(t, `"`+id+`"`, string(resp.Result))
			}
		}()
		time.Sleep(50 * time.Millisecond) // arrive one after the other
	}
	close(gate)
	wg.Wait()
	assert.Equal(t, []string{"q0", "q1", "q2", "q3", "q4"}, order)
}

// readyWorker needs a pause after each script before it can serve again.
type readyWorker struct {
	fakeWorker
	mu    sync.Mutex
	ready bool
}

func (w *readyWorker) Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	w.mu.Lock()
	ready := w.ready
	w.ready = false
	w.mu.Unlock()
	if !ready {
		return nil, errors.New("run on a worker that is not ready")
	}
	return w.fakeWorker.Run(ctx, req)
}

func (w *readyWorker) AwaitReady(ctx context.Context) error {
	time.Sleep(50 * time.Millisecond)
	w.mu.Lock()
	w.ready = true
	w.mu.Unlock()
	return nil
}

func TestPool_ReusableWorkerReturnsOnlyWhenReady(t *testing.T) {
	var made atomic.Int64
	spawn := func(ctx context.Context) (Worker, error) {
		w := &readyWorker{ready: true}
		w.id = made.Add(1)
		w.reusable = true
		return w, nil
	}
	p := newPool(t, Config{Size: 2, Spawn: spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 2 }, time.Second, time.Millisecond)
	for i := 0; i < 10; i++ {
		_, err := p.Execute(context.Background(), req())
		require.NoError(t, err, "request %d reached a worker that was not ready", i)
	}
	assert.EqualValues(t, 2, made.Load(), "reusable workers are kept, not replaced")
}

func TestPool_RetiresOldWorkersOneAtATime(t *testing.T) {
	f := &factory{delay: 60 * time.Millisecond}
	p := newPool(t, Config{Size: 4, Spawn: f.spawn, MaxAge: 20 * time.Millisecond, MaintainInterval: 5 * time.Millisecond})
	require.NoError(t, p.WaitReady(context.Background()))
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 4 }, 2*time.Second, time.Millisecond)
	// Every worker is soon over age, and a spawn takes many ticks; yet
	// the next is retired only once its predecessor's replacement is up,
	// so the pool never drops below size-1 warm workers on account of age.
	deadline := time.Now().Add(600 * time.Millisecond)
	minIdle := 4
	for time.Now().Before(deadline) {
		s, _, _ := p.Status()
		if s.Idle+s.Busy < minIdle {
			minIdle = s.Idle + s.Busy
		}
		time.Sleep(2 * time.Millisecond)
	}
	assert.GreaterOrEqual(t, p.Recycled(), int64(4), "old workers are retired")
	assert.GreaterOrEqual(t, minIdle, 3, "at most one worker at a time is retired for age")
}
