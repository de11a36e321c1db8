package jail

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/fakesandbox"
	"github.com/pyexec/pyexec/internal/testenv"
)

// The tests in this file drive real Workers through NewSpawner and Spawn,
// with the fake sandbox in place of nsjail and the harness: they need no
// root, no nsjail, no Python and no cgroups.

func fakeSpawner(t *testing.T, cfg Config) (*Spawner, *fakesandbox.Sandbox) {
	t.Helper()
	sb := fakesandbox.New(t)
	cfg.PythonPath, cfg.NsjailPath, cfg.Cgroup = sb.Python, sb.Nsjail, CgroupNone
	s, err := NewSpawner(withLimits(cfg), zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s, sb
}

// fakeRun runs script and requires that Run itself did not fail.
func fakeRun(t *testing.T, w *Worker, script string) *pyexec.Response {
	t.Helper()
	resp, err := w.Run(context.Background(), pyexec.Request{ID: "client-id", Script: script, Timeout: 10 * time.Second})
	require.NoError(t, err)
	return resp
}

// requireGone requires that none of pids runs any more.
func requireGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		require.Eventually(t, func() bool { return !testenv.Alive(pid) }, 5*time.Second, 5*time.Millisecond, "pid %d survived", pid)
	}
}

func TestFakeWorker_AnswersAndIsUsedOnce(t *testing.T) {
	s, sb := fakeSpawner(t, Config{})
	for _, tc := range []struct {
		script string
		code   pyexec.Code
	}{
		{"print out\neprint err\nresult {\"a\": [1, 2]}", ""},
		{"error validation_error no main", pyexec.CodeValidation},
		{"error runtime_error boom", pyexec.CodeRuntime},
	} {
		w := spawn(t, s)
		resp := fakeRun(t, w, tc.script)
		if tc.code == "" {
			require.Nil(t, resp.Error, "%+v", resp.Error)
			assert.JSONEq(t, `{"a": [1, 2]}`, string(resp.Result))
			assert.Equal(t, "out\n", resp.Stdout)
			assert.Equal(t, "err\n", resp.Stderr)
		} else {
			require.NotNil(t, resp.Error)
			assert.Equal(t, tc.code, resp.Error.Code)
			assert.Nil(t, resp.Result)
		}
		assert.Panics(t, func() { _, _ = w.Run(context.Background(), pyexec.Request{Script: "result 1", Timeout: time.Second}) },
			"a used strict worker must never be given a second script")
	}
	require.Len(t, sb.Pids("harness"), 3)
}

// The harness receives a message id drawn for that message, never the
// client's, and the limits the service applies.
func TestFakeWorker_RequestCarriesFreshIDAndLimits(t *testing.T) {
	s, _ := fakeSpawner(t, Config{MaxOutputBytes: 4096, Validation: ValidationMinimal})
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		w := spawn(t, s)
		resp := fakeRun(t, w, "echo")
		require.Nil(t, resp.Error, "%+v", resp.Error)
		var got requestMsg
		require.NoError(t, json.Unmarshal(resp.Result, &got))
		assert.NotContains(t, got.ID, "client-id")
		assert.Len(t, got.ID, 32)
		assert.False(t, seen[got.ID], "message id %s used twice", got.ID)
		seen[got.ID] = true
		assert.Equal(t, "echo", got.Script)
		assert.EqualValues(t, 10000, got.TimeoutMS)
		assert.Equal(t, requestLimits{MaxOutputBytes: 4096, MaxScriptBytes: 200 * 1024, Validation: "minimal",
			MaxFigures: MaxFigures, MaxFigurePixels: MaxFigurePixels}, got.Limits)
	}
}

// Nothing a harness writes is trusted: a reply to another message, a line
// that is not a reply, one over the size limit or an outcome a script cannot
// cause is a sandbox error, and output over the cap is cut.
func TestFakeWorker_RepliesAreChecked(t *testing.T) {
	s, _ := fakeSpawner(t, Config{MaxOutputBytes: 1024, MemoryMB: 300})
	for _, tc := range []struct {
		name, script string
		code         pyexec.Code
		message      string
		killed       bool // the worker is killed at once, not left to exit
	}{
		{"another message's id", "id 0123456789abcdef0123456789abcdef\nresult 1", pyexec.CodeSandbox, "invalid reply", true},
		{"not JSON", "raw hello\nlinger", pyexec.CodeSandbox, "invalid reply", true},
		{"neither result nor error", `raw {"id": "x"}` + "\nlinger", pyexec.CodeSandbox, "invalid reply", true},
		{"over the line limit", "big 1200000\nlinger", pyexec.CodeSandbox, "larger than allowed", true},
		{"a platform's code", "error overloaded try later", pyexec.CodeSandbox, "try later", false},
		{"memory limit, message of its own", "error memory_limit whatever", pyexec.CodeMemoryLimit, "memory limit (300 MB)", false},
		{"result over the cap", `result "` + strings.Repeat("r", 1100) + `"`, pyexec.CodeOutputLimit, "over the 1024-byte limit", false},
		{"lone surrogate", `result "\ud800"`, pyexec.CodeInvalidResult, "surrogate", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := spawn(t, s)
			resp := fakeRun(t, w, tc.script)
			require.NotNil(t, resp.Error)
			assert.Equal(t, tc.code, resp.Error.Code)
			assert.Contains(t, resp.Error.Message, tc.message)
			if tc.killed {
				// The harness lingers: only the worker's kill ends it.
				assert.False(t, w.Alive(), "the worker is killed with its answer")
			}
		})
	}

	w := spawn(t, s)
	long := strings.Repeat("é", 600) // 1200 bytes
	resp := fakeRun(t, w, "print "+long+"\neprint short\nresult 1")
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.True(t, resp.StdoutTruncated)
	assert.Equal(t, strings.Repeat("é", 512), resp.Stdout, "cut at the cap, on a character boundary")
	assert.False(t, resp.StderrTruncated)
	assert.Equal(t, "short\n", resp.Stderr)
}

// A worker that ends without answering is explained by how it ended.
func TestFakeWorker_DeathIsClassified(t *testing.T) {
	s, _ := fakeSpawner(t, Config{})
	for _, tc := range []struct {
		script  string
		code    pyexec.Code
		message string
	}{
		{"exit 3", pyexec.CodeSandbox, "exited before answering (exit status 3)"},
		{"noreply", pyexec.CodeSandbox, "exited before answering (exit status 0)"},
		// Without cgroups a SIGKILL may be the kernel's OOM killer.
		{"signal 9", pyexec.CodeSandbox, "killed (possibly out of memory)"},
		{"signal 24", pyexec.CodeTimeout, "CPU time limit"},
		{"signal 11", pyexec.CodeSandbox, "died of signal 11"},
	} {
		w := spawn(t, s)
		resp := fakeRun(t, w, tc.script)
		require.NotNil(t, resp.Error, tc.script)
		assert.Equal(t, tc.code, resp.Error.Code, tc.script)
		assert.Contains(t, resp.Error.Message, tc.message, tc.script)
		assert.False(t, w.Alive(), tc.script)
	}
}

// A harness that closes its end of the protocol and stays alive is killed
// as soon as the channel ends (the kernel tells, through the pidfd, that it
// still runs), not waited for.
func TestFakeWorker_ClosedChannelWhileAliveIsKilled(t *testing.T) {
	s, sb := fakeSpawner(t, Config{})
	w := spawn(t, s)
	resp := fakeRun(t, w, "close")
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeSandbox, resp.Error.Code)
	assert.Contains(t, resp.Error.Message, "closed its channel")
	assert.False(t, w.Alive())
	requireGone(t, sb.Pids("harness"))
}

func TestFakeWorker_TimeoutAndCancelKillTheWorker(t *testing.T) {
	s, sb := fakeSpawner(t, Config{})
	w := spawn(t, s)
	resp, err := w.Run(context.Background(), pyexec.Request{Script: "sleep 1m", Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeTimeout, resp.Error.Code)
	assert.Equal(t, "script exceeded the 0.1s time limit", resp.Error.Message)
	assert.False(t, w.Alive())

	w = spawn(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	marker := filepath.Join(t.TempDir(), "running")
	done := make(chan error, 1)
	go func() {
		_, err := w.Run(ctx, pyexec.Request{Script: "touch " + marker + "\nsleep 1m", Timeout: time.Minute})
		done <- err
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.False(t, w.Alive())
	requireGone(t, sb.Pids("harness"))
}

// The harness killed from outside while it runs a script: Run notices at
// once and reports a sandbox error.
func TestFakeWorker_KilledFromOutsideMidRun(t *testing.T) {
	s, sb := fakeSpawner(t, Config{})
	w := spawn(t, s)
	marker := filepath.Join(t.TempDir(), "running")
	done := make(chan *pyexec.Response, 1)
	go func() {
		resp, err := w.Run(context.Background(), pyexec.Request{Script: "touch " + marker + "\nsleep 1m", Timeout: time.Minute})
		if err != nil {
			resp = &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeInternal, "%v", err)}
		}
		done <- resp
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 10*time.Second, 5*time.Millisecond)
	pids := sb.Pids("harness")
	require.Len(t, pids, 1)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	select {
	case resp := <-done:
		require.NotNil(t, resp.Error)
		assert.Equal(t, pyexec.CodeSandbox, resp.Error.Code, resp.Error.Message)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not notice the worker's death")
	}
}

func TestFakeSpawn_FailuresAreReportedAndLeaveNothing(t *testing.T) {
	for _, tc := range []struct {
		startup   string
		isolation Isolation
		message   string
	}{
		{"exit", IsolationStrict, "broken harness"},
		{"garbage", IsolationStrict, "decode ready line"},
		{"protocol2", IsolationStrict, "protocol 2"},
		{"silent", IsolationStrict, "not ready after"},
	} {
		t.Run(tc.startup, func(t *testing.T) {
			s, sb := fakeSpawner(t, Config{Isolation: tc.isolation, SpawnTimeout: 300 * time.Millisecond})
			sb.Startup(t, tc.startup)
			w, err := s.Spawn(context.Background())
			require.Error(t, err)
			assert.Nil(t, w)
			assert.Contains(t, err.Error(), tc.message)
			if tc.startup == "silent" {
				assert.ErrorIs(t, err, ErrSpawnTimeout)
			}
			requireGone(t, sb.Pids("harness"))
		})
	}

	s, sb := fakeSpawner(t, Config{})
	sb.Startup(t, "silent")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Spawn(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

// fakeOOMCounter stands in for the worker cgroup's memory.events: the
// worker reads its OOM-kill count from the file, which a script of the
// fake sandbox can write as the kernel would.
func fakeOOMCounter(t *testing.T, w *Worker, kills int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "memory.events")
	require.NoError(t, os.WriteFile(path, []byte("oom 0\noom_kill "+strconv.Itoa(kills)+"\n"), 0o644))
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	w.cg.events = f
	return path
}

// A worker killed by the OOM killer is reported as over its memory limit.
func TestFakeWorker_OOMKillIsMemoryLimit(t *testing.T) {
	s, _ := fakeSpawner(t, Config{MemoryMB: 256})
	w := spawn(t, s)
	events := fakeOOMCounter(t, w, 0)
	resp := fakeRun(t, w, "write "+events+" oom_kill 1\nsignal 9")
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeMemoryLimit, resp.Error.Code)
	assert.Equal(t, "script exceeded the memory limit (256 MB)", resp.Error.Message)

}
