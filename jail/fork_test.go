package jail

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec"
)

func TestFork_OneJailServesManyScripts(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, MaxRuns: 5})
	w := spawn(t, s)
	assert.True(t, w.ready.Zygote)
	for i := 0; i < 4; i++ {
		t0 := time.Now()
		resp := run(t, w, "import os\ndef main():\n    print('pid', os.getpid())\n    open('/tmp/mark', 'a').write('x')\n    return len(open('/tmp/mark').read())\n", 5*time.Second)
		require.Nil(t, resp.Error, "%+v", resp.Error)
		assert.Equal(t, "1", string(resp.Result), "run %d saw an earlier run's /tmp", i)
		t.Log("run", i, time.Since(t0), resp.Stdout)
		require.True(t, w.Reusable())
	}
	resp := run(t, w, "def main():\n    return 5\n", 5*time.Second)
	require.Nil(t, resp.Error)
	assert.False(t, w.Reusable(), "recycled after MaxRuns")
}

func TestFork_ChildDeathAndTimeoutEndTheJail(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	w := spawn(t, s)
	resp := run(t, w, "import os\ndef main():\n    os._exit(3)\n", 5*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeSandbox, resp.Error.Code)
	assert.False(t, w.Reusable())

	w = spawn(t, s)
	resp = run(t, w, "def main():\n    return len(bytearray(8 * 1024**3))\n", 5*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeMemoryLimit, resp.Error.Code)
	assert.False(t, w.Reusable())

	w = spawn(t, s)
	resp = run(t, w, "def main():\n    x = []\n    while True:\n        x.append(b'y' * (1 << 20))\n", 20*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeMemoryLimit, resp.Error.Code)

	w = spawn(t, s)
	r2, err := w.Run(context.Background(), pyexec.Request{ID: "t", Script: "import time\ndef main():\n    time.sleep(100)\n", Timeout: 500 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, pyexec.CodeTimeout, r2.Error.Code)
	assert.False(t, w.Reusable())
}

func TestFork_WaitingChildIsIdleClassAndScriptsRunNormal(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	w := spawn(t, s)
	require.NotZero(t, w.harnessPID)
	policy := func(pid int) int {
		attr, err := unix.SchedGetAttr(pid, 0)
		require.NoError(t, err)
		return int(attr.Policy)
	}
	for i := 0; i < 3; i++ {
		child := childOf(w.harnessPID)
		require.NotZero(t, child, "a child is forked ahead of the script")
		assert.Equal(t, unix.SCHED_IDLE, policy(child), "the waiting child only uses idle time")
		assert.Equal(t, unix.SCHED_NORMAL, policy(w.harnessPID), "the zygote restores jails at normal priority")
		resp := run(t, w, "import os\ndef main():\n    return [os.sched_getscheduler(0) == os.SCHED_OTHER, os.nice(0)]\n", 5*time.Second)
		require.Nil(t, resp.Error, "%+v", resp.Error)
		assert.JSONEq(t, "[true, 0]", string(resp.Result), "the script runs in the normal class at nice 0")
		require.NoError(t, w.AwaitReady(context.Background()))
	}
}

func TestFork_JailRunLimitsAreSpread(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 1000; i++ {
		n := jailRuns(1000)
		require.GreaterOrEqual(t, n, 801)
		require.LessOrEqual(t, n, 1000)
		seen[n] = true
	}
	assert.Greater(t, len(seen), 100, "limits drawn from a spread, so jails started together end apart")
	assert.Equal(t, 4, jailRuns(4), "too small to spread")
}

// A child that has answered cannot hold its jail: one that lingers (here
// by patching the sleep the harness takes after answering) is killed, the
// zygote restores the jail and the next script runs.
func TestFork_AChildLingeringAfterItsAnswerIsKilled(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	w := spawn(t, s)
	resp := run(t, w, "import time\n_real = time.sleep\ndef main():\n    time.sleep = lambda s: _real(60)\n    return 'looks normal'\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	require.True(t, w.Reusable())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, w.AwaitReady(ctx), "the jail is restored without waiting for the lingering child")
	resp = run(t, w, "def main():\n    return 2\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, "2", string(resp.Result))
}
