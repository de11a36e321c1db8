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
// Only the pool calls Kill, so killed says the pool killed it.
type fakeWorker struct {
	id     int64
	run    func(ctx context.Context, req pyexec.Request) (*pyexec.Response, error)
	runs   atomic.Int64
	killed atomic.Bool
	dead   atomic.Bool
	onKill func() // called on the first Kill
}

func (w *fakeWorker) Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	w.runs.Add(1)
	if w.run != nil {
		return w.run(ctx, req)
	}
	return &pyexec.Response{Result: []byte(fmt.Sprintf("%d", w.id))}, nil
}
func (w *fakeWorker) Alive() bool { return !w.dead.Load() && !w.killed.Load() }
func (w *fakeWorker) Kill() {
	if w.killed.CompareAndSwap(false, true) && w.onKill != nil {
		w.onKill()
	}
}

// factory spawns fake workers and remembers them.
type factory struct {
	mu      sync.Mutex
	workers []*fakeWorker
	next    atomic.Int64
	fail    atomic.Bool
	delay   time.Duration
	calls   atomic.Int64
	delayOf func(call int64) time.Duration // the n-th spawn's delay, when set
	make    func(w *fakeWorker)
	onKill  func()
}

func (f *factory) spawn(ctx context.Context) (Worker, error) {
	delay := f.delay
	if f.delayOf != nil {
		delay = f.delayOf(f.calls.Add(1))
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.fail.Load() {
		return nil, errors.New("no jail here")
	}
	w := &fakeWorker{id: f.next.Add(1), onKill: f.onKill}
	if f.make != nil {
		f.make(w)
	}
	f.mu.Lock()
	f.workers = append(f.workers, w)
	f.mu.Unlock()
	return w, nil
}

// heldUntil is a factory whose workers answer "1" once release is closed.
func heldUntil(release <-chan struct{}) *factory {
	return &factory{make: func(w *fakeWorker) {
		w.run = func(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
			<-release
			return &pyexec.Response{Result: []byte("1")}, nil
		}
	}}
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

func TestPool_OverloadedWhenNoWorkerFreesUp(t *testing.T) {
	release := make(chan struct{})
	f := heldUntil(release)
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
	gate := make(chan struct{})
	f := &factory{make: func(w *fakeWorker) {
		w.run = func(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
			<-gate
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
	// Two requests hold both workers and eight wait for them.
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Busy == 2 && p.queue.len() == 8 }, 5*time.Second, time.Millisecond)
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestPool_CancelledRequestKillsItsWorker(t *testing.T) {
	// It does not kill itself: only the pool's handling of the failed run
	// can end it.
	f := &factory{make: func(w *fakeWorker) {
		w.run = func(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := p.Execute(ctx, req())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return f.all()[0].killed.Load() }, 2*time.Second, time.Millisecond,
		"the pool kills a worker whose run failed")
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 1 }, 2*time.Second, 5*time.Millisecond)
	assert.Len(t, f.all(), 2, "and replaces it")
}

func TestPool_DeadIdleWorkerIsReplaced(t *testing.T) {
	f := &factory{}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	dead := f.all()[0]
	dead.dead.Store(true)
	resp, err := p.Execute(context.Background(), req())
	require.NoError(t, err)
	assert.NotEqual(t, "1", string(resp.Result), "the dead worker must not serve")
	assert.Zero(t, dead.runs.Load(), "the dead worker was given the script")
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
	var mu sync.Mutex
	var failed []time.Time
	onSpawn := func(_ time.Duration, err error) {
		if err != nil {
			mu.Lock()
			failed = append(failed, time.Now())
			mu.Unlock()
		}
	}
	failures := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), failed...)
	}
	p := newPool(t, Config{Size: 2, Spawn: f.spawn, SpawnConcurrency: 1, OnSpawn: onSpawn})
	err := p.WaitReady(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no jail here")
	_, ready, reason := p.Status()
	assert.False(t, ready)
	assert.Contains(t, reason, "no worker can be started")

	// The backoff starts at 100ms and doubles: the retries come at least
	// that far apart.
	require.Eventually(t, func() bool { return len(failures()) >= 3 }, 5*time.Second, 5*time.Millisecond)
	at := failures()
	assert.GreaterOrEqual(t, at[1].Sub(at[0]), 100*time.Millisecond)
	assert.GreaterOrEqual(t, at[2].Sub(at[1]), 200*time.Millisecond)

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
		// The next arrives only once this one waits in the queue.
		require.Eventually(t, func() bool { return p.queue.len() == i+1 }, 5*time.Second, time.Millisecond)
	}
	close(gate)
	wg.Wait()
	assert.Equal(t, []string{"q0", "q1", "q2", "q3", "q4"}, order)
}

func TestPool_RetiresOldWorkersOneAtATime(t *testing.T) {
	// live counts the workers spawned and not yet killed; minLive is its
	// lowest value at any kill.
	var live, minLive atomic.Int64
	minLive.Store(4)
	f := &factory{delay: 60 * time.Millisecond, make: func(w *fakeWorker) { live.Add(1) }}
	f.onKill = func() {
		n := live.Add(-1)
		for m := minLive.Load(); n < m && !minLive.CompareAndSwap(m, n); m = minLive.Load() {
		}
	}
	p := newPool(t, Config{Size: 4, Spawn: f.spawn, MaxAge: 20 * time.Millisecond, MaintainInterval: 5 * time.Millisecond})
	require.NoError(t, p.WaitReady(context.Background()))
	// Every worker is soon over age, and a spawn takes many ticks; yet
	// the next is retired only once its predecessor's replacement is up,
	// so the pool never drops below size-1 warm workers on account of age.
	require.Eventually(t, func() bool { return p.Recycled() >= 4 }, 20*time.Second, 5*time.Millisecond, "old workers are retired")
	assert.GreaterOrEqual(t, minLive.Load(), int64(3), "at most one worker at a time is retired for age")
}

// The idle worker made first serves first: it has waited, and warmed up,
// the longest.
func TestPool_OldestIdleWorkerServesFirst(t *testing.T) {
	// One spawn at a time, so "made first" has one meaning.
	f := &factory{}
	p := newPool(t, Config{Size: 3, Spawn: f.spawn, SpawnConcurrency: 1})
	assert.Equal(t, []string{"1", "2", "3", "4"}, serveFromFullPool(t, p, 4), "workers serve in the order they were made")
}

func TestPool_WorkerReadyFirstServesFirstWhenSpawnsOverlap(t *testing.T) {
	// Three spawns start together and end in the reverse order: the one
	// started last is ready first. A worker's id is given when its spawn
	// ends, so ids count in the order of readiness.
	f := &factory{delayOf: func(call int64) time.Duration { return time.Duration(4-call) * 40 * time.Millisecond }}
	p := newPool(t, Config{Size: 3, Spawn: f.spawn, SpawnConcurrency: 3})
	served := serveFromFullPool(t, p, 3)
	assert.Equal(t, []string{"1", "2", "3"}, served, "the worker that has waited longest serves first")
}

// serveFromFullPool runs n requests, each once the pool is full again, and
// returns the ids of the workers that served them.
func serveFromFullPool(t *testing.T, p *Pool, n int) []string {
	t.Helper()
	require.NoError(t, p.WaitReady(context.Background()))
	full := func() bool { s, _, _ := p.Status(); return s.Idle == p.cfg.Size }
	require.Eventually(t, full, 2*time.Second, time.Millisecond)
	var served []string
	for i := 0; i < n; i++ {
		resp, err := p.Execute(context.Background(), req())
		require.NoError(t, err)
		served = append(served, string(resp.Result))
		require.Eventually(t, full, 2*time.Second, time.Millisecond)
	}
	return served
}

func TestPool_ASlowKillDoesNotHoldItsSlot(t *testing.T) {
	release := make(chan struct{})
	var killed atomic.Int64
	f := &factory{onKill: func() { <-release; killed.Add(1) }}
	p := newPool(t, Config{Size: 1, Spawn: f.spawn, QueueTimeout: 2 * time.Second})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the pool's Close, should the test stop early
	require.NoError(t, p.WaitReady(context.Background()))
	first, err := p.Execute(context.Background(), req())
	require.NoError(t, err)
	// The first worker's kill does not end until released; a second
	// worker serves the next request meanwhile.
	second, err := p.Execute(context.Background(), req())
	require.NoError(t, err)
	assert.NotEqual(t, string(first.Result), string(second.Result))
	assert.Zero(t, killed.Load(), "the kills are still under way")

	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while kills were under way")
	case <-time.After(100 * time.Millisecond):
	}
	free()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return once the kills ended")
	}
	f.mu.Lock()
	spawned := len(f.workers)
	f.mu.Unlock()
	assert.EqualValues(t, spawned, killed.Load(), "every worker was killed before Close returned")
}

// A request that waits is served by the first worker to become ready, not
// by one started for it. The replacement of the first freed slot is slow
// and that of the second fast: the waiting request gets the fast one.
func TestPool_AWaitingRequestTakesTheFirstWorkerReady(t *testing.T) {
	gates := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	f := &factory{
		// Spawns 1 and 2 fill the pool; 3 replaces a's worker, 4 b's.
		delayOf: func(call int64) time.Duration {
			if call == 3 {
				return 2 * time.Second
			}
			return 0
		},
		make: func(w *fakeWorker) {
			w.run = func(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
				if g, ok := gates[req.ID]; ok {
					<-g
				}
				return &pyexec.Response{Result: []byte(fmt.Sprintf("%d", w.id))}, nil
			}
		},
	}
	p := newPool(t, Config{Size: 2, Spawn: f.spawn, QueueTimeout: 5 * time.Second})
	require.NoError(t, p.WaitReady(context.Background()))
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 2 }, 2*time.Second, time.Millisecond)
	run := func(id string) <-chan string {
		out := make(chan string, 1)
		go func() {
			resp, err := p.Execute(context.Background(), pyexec.Request{ID: id, Timeout: time.Second})
			if assert.NoError(t, err) {
				out <- string(resp.Result)
			} else {
				out <- ""
			}
		}()
		return out
	}
	a, b := run("a"), run("b")
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Busy == 2 }, 2*time.Second, time.Millisecond)
	c := run("c")
	require.Eventually(t, func() bool { return p.queue.len() == 1 }, 2*time.Second, time.Millisecond)

	close(gates["a"])
	<-a
	require.Eventually(t, func() bool { return f.calls.Load() == 3 }, 2*time.Second, time.Millisecond, "a's slot is refilled")
	close(gates["b"])
	<-b
	// Worker ids are given as spawns end: 3 is the fast spawn's.
	assert.Equal(t, "3", <-c, "the waiting request is served by the first worker ready")
}

// When no worker is left and a spawn fails, the requests waiting are
// answered with the spawn's failure at once, not at their queue timeout.
func TestPool_WaitingRequestsLearnThatNoWorkerCanStart(t *testing.T) {
	release := make(chan struct{})
	f := heldUntil(release)
	p := newPool(t, Config{Size: 1, Spawn: f.spawn, QueueTimeout: time.Minute})
	require.NoError(t, p.WaitReady(context.Background()))
	first := make(chan error, 1)
	go func() { _, err := p.Execute(context.Background(), req()); first <- err }()
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Busy == 1 }, 2*time.Second, time.Millisecond)
	waiting := make(chan error, 1)
	go func() { _, err := p.Execute(context.Background(), req()); waiting <- err }()
	require.Eventually(t, func() bool { return p.queue.len() == 1 }, 2*time.Second, time.Millisecond)

	f.fail.Store(true)
	close(release)
	require.NoError(t, <-first)
	select {
	case err := <-waiting:
		require.Error(t, err)
		assert.Equal(t, pyexec.CodeInternal, pyexec.ErrorCode(err))
		assert.Contains(t, err.Error(), "no jail here")
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting request was not told that no worker could start")
	}
}

// len is the number of requests waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting)
}
