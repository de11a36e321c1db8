package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

func newCold(t *testing.T, f *factory, concurrency int) *Cold {
	t.Helper()
	c, err := NewCold(ColdConfig{Spawn: f.spawn, Concurrency: concurrency, QueueTimeout: time.Second, SpawnTimeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func TestCold_SpawnsAWorkerPerRequestAndKillsIt(t *testing.T) {
	f := &factory{}
	c := newCold(t, f, 2)
	require.NoError(t, c.WaitReady(context.Background()))
	for i := 0; i < 3; i++ {
		resp, err := c.Execute(context.Background(), req())
		require.NoError(t, err)
		// Worker ids count from 1; the first was the readiness probe.
		assert.Equal(t, []byte{byte('2' + i)}, []byte(resp.Result))
	}
	// Workers are killed just after their answer; Close waits for that.
	c.Close()
	ws := f.all()
	require.Len(t, ws, 4) // one readiness probe, three requests
	for _, w := range ws {
		assert.True(t, w.killed.Load(), "worker %d", w.id)
		assert.LessOrEqual(t, w.runs.Load(), int64(1), "worker %d ran more than one script", w.id)
	}
	s, ready, reason := c.Status()
	assert.False(t, ready)
	assert.Equal(t, "shutting down", reason)
	assert.EqualValues(t, 4, s.Spawned)
}

func TestCold_BoundsConcurrencyAndQueues(t *testing.T) {
	release := make(chan struct{})
	running := make(chan struct{}, 4)
	f := &factory{make: func(w *fakeWorker) {
		w.run = func(ctx context.Context, _ pyexec.Request) (*pyexec.Response, error) {
			running <- struct{}{}
			<-release
			return &pyexec.Response{Result: []byte("1")}, nil
		}
	}}
	c, err := NewCold(ColdConfig{Spawn: f.spawn, Concurrency: 1, QueueTimeout: 50 * time.Millisecond, SpawnTimeout: time.Second})
	require.NoError(t, err)
	defer c.Close()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := c.Execute(context.Background(), req())
		assert.NoError(t, err)
	}()
	<-running
	s, _, _ := c.Status()
	assert.Equal(t, 1, s.Busy)
	// The one slot is taken: the next request waits its queue timeout and
	// is refused as overloaded.
	_, err = c.Execute(context.Background(), req())
	assert.Equal(t, pyexec.CodeOverloaded, pyexec.ErrorCode(err))
	close(release)
	wg.Wait()
}

func TestCold_SpawnFailureIsReportedNotFatal(t *testing.T) {
	f := &factory{}
	f.fail.Store(true)
	c := newCold(t, f, 1)
	require.Error(t, c.WaitReady(context.Background()))
	_, err := c.Execute(context.Background(), req())
	assert.Equal(t, pyexec.CodeInternal, pyexec.ErrorCode(err))
	s, ready, _ := c.Status()
	assert.True(t, ready, "a cold executor stays in service: the next spawn may work")
	assert.Contains(t, s.LastSpawnErr, "no jail here")
	assert.EqualValues(t, 2, s.SpawnFailures)

	f.fail.Store(false)
	_, err = c.Execute(context.Background(), req())
	require.NoError(t, err)
	s, _, _ = c.Status()
	assert.Empty(t, s.LastSpawnErr)
}

func TestCold_ClosedRefuses(t *testing.T) {
	c := newCold(t, &factory{}, 1)
	c.Close()
	_, err := c.Execute(context.Background(), req())
	assert.Equal(t, pyexec.CodeOverloaded, pyexec.ErrorCode(err))
	assert.True(t, errors.Is(err, ErrClosed))
}

func TestNewCold_RefusesAMissingSetting(t *testing.T) {
	_, err := NewCold(ColdConfig{Concurrency: 1, QueueTimeout: time.Second, SpawnTimeout: time.Second})
	assert.ErrorContains(t, err, "no spawn function")
	_, err = NewCold(ColdConfig{Spawn: (&factory{}).spawn, QueueTimeout: time.Second, SpawnTimeout: time.Second})
	assert.ErrorContains(t, err, "must be set")
}
