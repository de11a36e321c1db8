package pool

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/fakesandbox"
	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
)

// The tests in this file run the pool on real jail workers, started by
// jail's Spawner on the fake sandbox (no root, nsjail or Python needed).

// jailWorkers spawns jail workers on a fake sandbox and remembers them.
type jailWorkers struct {
	sb *fakesandbox.Sandbox
	s  *jail.Spawner
	mu sync.Mutex
	ws []*jail.Worker
}

func newJailWorkers(t *testing.T, isolation jail.Isolation) *jailWorkers {
	t.Helper()
	sb := fakesandbox.New(t)
	s, err := jail.NewSpawner(jail.Config{PythonPath: sb.Python, NsjailPath: sb.Nsjail, Cgroup: jail.CgroupNone,
		Isolation: isolation, SpawnTimeout: 10 * time.Second,
		MemoryMB: 256, PidsMax: 16, TmpfsMB: 16, MaxOutputBytes: 1 << 16, MaxScriptBytes: 1 << 16}, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return &jailWorkers{sb: sb, s: s}
}

func (j *jailWorkers) spawn(ctx context.Context) (Worker, error) {
	w, err := j.s.Spawn(ctx)
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	j.ws = append(j.ws, w)
	j.mu.Unlock()
	return w, nil
}

func (j *jailWorkers) all() []*jail.Worker {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]*jail.Worker(nil), j.ws...)
}

// requireAllGone requires that no process the fake sandbox started runs.
func (j *jailWorkers) requireAllGone(t *testing.T) {
	t.Helper()
	for _, role := range []string{"harness", "zygote", "child"} {
		for _, pid := range j.sb.Pids(role) {
			require.Eventually(t, func() bool { return !testenv.Alive(pid) }, 5*time.Second, 5*time.Millisecond, "%s %d survived", role, pid)
		}
	}
}

func execute(t *testing.T, p *Pool, script string) *pyexec.Response {
	t.Helper()
	resp, err := p.Execute(context.Background(), pyexec.Request{ID: "r", Script: script, Timeout: 10 * time.Second})
	require.NoError(t, err)
	return resp
}

// A strict worker serves one script; the pool kills it (the fake harness
// stays alive after answering, so nothing else would end it) and starts
// another.
func TestPoolOnJail_StrictWorkerServesOnceAndIsKilled(t *testing.T) {
	j := newJailWorkers(t, jail.IsolationStrict)
	p := newPool(t, Config{Size: 2, Spawn: j.spawn})
	require.NoError(t, p.WaitReady(context.Background()))
	served := map[string]bool{}
	for i := 0; i < 4; i++ {
		resp := execute(t, p, "pid\nlinger")
		require.Nil(t, resp.Error, "%+v", resp.Error)
		assert.False(t, served[string(resp.Result)], "harness %s served twice", resp.Result)
		served[string(resp.Result)] = true
	}
	for pid := range served {
		n, err := strconv.Atoi(pid)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return !testenv.Alive(n) }, 5*time.Second, time.Millisecond, "used harness %d not killed", n)
	}
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 2 }, 10*time.Second, 5*time.Millisecond)
	p.Close()
	j.requireAllGone(t)
}

// A worker killed from outside while idle is not given a script: the
// request is served by its replacement.
func TestPoolOnJail_DeadIdleWorkerIsReplaced(t *testing.T) {
	j := newJailWorkers(t, jail.IsolationStrict)
	p := newPool(t, Config{Size: 1, Spawn: j.spawn, MaintainInterval: time.Hour})
	require.NoError(t, p.WaitReady(context.Background()))
	require.Eventually(t, func() bool { s, _, _ := p.Status(); return s.Idle == 1 }, 10*time.Second, 5*time.Millisecond)
	pids := j.sb.Pids("harness")
	require.Len(t, pids, 1)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	first := j.all()[0]
	require.Eventually(t, func() bool { return !first.Alive() }, 5*time.Second, time.Millisecond)
	resp := execute(t, p, "pid")
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.NotEqual(t, strconv.Itoa(pids[0]), string(resp.Result))
}

// A script over its time limit and a request cancelled while its script
// runs both cost the worker; the pool serves on with a fresh one.
func TestPoolOnJail_TimeoutAndCancellation(t *testing.T) {
	j := newJailWorkers(t, jail.IsolationStrict)
	p := newPool(t, Config{Size: 1, Spawn: j.spawn})
	require.NoError(t, p.WaitReady(context.Background()))

	resp, err := p.Execute(context.Background(), pyexec.Request{ID: "r", Script: "sleep 1m", Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeTimeout, resp.Error.Code)

	marker := filepath.Join(t.TempDir(), "running")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Execute(ctx, pyexec.Request{ID: "r", Script: "touch " + marker + "\nsleep 1m", Timeout: time.Minute})
		done <- err
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	failed := j.sb.Pids("harness")
	require.Len(t, failed, 2)
	resp = execute(t, p, "pid")
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.NotContains(t, []string{strconv.Itoa(failed[0]), strconv.Itoa(failed[1])}, string(resp.Result),
		"each failed run cost its worker")
	p.Close()
	j.requireAllGone(t)
}
