package jail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/testenv"
)

// withLimits fills the required limits cfg leaves out with the values the
// tests are written against.
func withLimits(cfg Config) Config {
	for _, f := range []struct {
		field *int
		value int
	}{
		{&cfg.MemoryMB, 512}, {&cfg.PidsMax, 64}, {&cfg.TmpfsMB, 64},
		{&cfg.MaxOutputBytes, 1 << 20}, {&cfg.MaxScriptBytes, 200 << 10},
	} {
		if *f.field == 0 {
			*f.field = f.value
		}
	}
	if cfg.SpawnTimeout == 0 {
		cfg.SpawnTimeout = 30 * time.Second
		// An emulated machine (the cgroup v2 VM) starts a jail many times
		// slower.
		if d, err := time.ParseDuration(os.Getenv("PYEXEC_TEST_SPAWN_TIMEOUT")); err == nil {
			cfg.SpawnTimeout = d
		}
	}
	return cfg
}

func newSpawner(t *testing.T, cfg Config) *Spawner {
	t.Helper()
	cfg.PythonPath = testenv.Python(t)
	s, err := NewSpawner(withLimits(cfg), zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func spawn(t *testing.T, s *Spawner) *Worker {
	t.Helper()
	w, err := s.Spawn(context.Background())
	require.NoError(t, err)
	t.Cleanup(w.Kill)
	return w
}

// fork makes a fork-isolation child of s.
func fork(t *testing.T, s *Spawner) *Child {
	t.Helper()
	c, err := s.Fork(context.Background())
	require.NoError(t, err)
	t.Cleanup(c.Kill)
	return c
}

// runner is a strict worker or a fork child.
type runner interface {
	Run(ctx context.Context, req pyexec.Request) (*pyexec.Response, error)
}

func run(t *testing.T, w runner, script string, timeout time.Duration) *pyexec.Response {
	t.Helper()
	resp, err := w.Run(context.Background(), pyexec.Request{ID: "t", Script: script, Timeout: timeout})
	require.NoError(t, err)
	return resp
}

func TestWorker_KillLeavesNothingBehind(t *testing.T) {
	s := newSpawner(t, Config{})
	w := spawn(t, s)
	// Start a daemon that detaches from the harness, then kill the worker.
	resp := run(t, w, "import os, time\ndef main():\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(1000)\n    return os.getpid()\n", 5*time.Second)
	require.Nil(t, resp.Error)
	pids := w.cg.pids()
	dirs := append([]string(nil), w.cg.dirs...)
	if s.cg.mode != CgroupNone {
		require.NotEmpty(t, pids, "the worker's processes are in its cgroup")
	}
	nsjailPid := w.cmd.Process.Pid
	w.Kill()
	w.Kill() // twice is fine
	assert.False(t, testenv.Alive(nsjailPid))
	// A killed process leaves its cgroup before the kernel has finished
	// tearing it down, so give the teardown a moment.
	for _, pid := range pids {
		assert.Eventually(t, func() bool { return !testenv.Alive(pid) }, 5*time.Second, 10*time.Millisecond, "pid %d survived", pid)
	}
	for _, d := range dirs {
		_, err := os.Stat(d)
		assert.True(t, os.IsNotExist(err), "cgroup %s not removed", d)
	}
}

func TestWorker_KilledFromOutsideMidRunIsSandboxError(t *testing.T) {
	s := newSpawner(t, Config{})
	w := spawn(t, s)
	require.NotZero(t, w.harnessPID)
	type outcome struct {
		resp *pyexec.Response
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		resp, err := w.Run(context.Background(), pyexec.Request{ID: "t",
			Script: "import time\ndef main():\n    open('/tmp/running', 'w').close()\n    time.sleep(30)\n", Timeout: 20 * time.Second})
		done <- outcome{resp, err}
	}()
	// The script marks its /tmp once it runs; the test sees the jail's /tmp
	// through the interpreter's root.
	marker := fmt.Sprintf("/proc/%d/root/tmp/running", w.harnessPID)
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 10*time.Second, 5*time.Millisecond,
		"the script did not start")
	// Kill the jailed interpreter (not nsjail) as an outsider would.
	killed := false
	for _, pid := range w.cg.pids() {
		if pid != w.cmd.Process.Pid {
			// A v1 host lists each process once per controller: by its
			// second listing the interpreter may already be gone.
			if err := syscall.Kill(pid, syscall.SIGKILL); !errors.Is(err, syscall.ESRCH) {
				require.NoError(t, err)
			}
			killed = true
		}
	}
	if !killed { // no cgroups: kill the whole group instead
		require.NoError(t, syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL))
	}
	select {
	case o := <-done:
		require.NoError(t, o.err)
		require.NotNil(t, o.resp.Error)
		assert.Equal(t, pyexec.CodeSandbox, o.resp.Error.Code)
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not notice the worker's death")
	}
}

func TestWorker_IsUsedOnceWhateverItAnswers(t *testing.T) {
	s := newSpawner(t, Config{})
	for _, script := range []string{
		"def foo():\n    pass\n",              // validation error: no user code ran, by the harness's word
		"def main():\n    return 5\n",         // success
		"def main():\n    raise ValueError\n", // runtime error
	} {
		w := spawn(t, s)
		run(t, w, script, 5*time.Second)
		assert.Panics(t, func() { _, _ = w.Run(context.Background(), pyexec.Request{Script: script, Timeout: time.Second}) },
			"a used strict worker must never be given a second script")
	}
}

// The protocol's message id is drawn for each message: the client's request
// id never reaches the jail, and no two messages share one.
func TestWorker_MessageIDIsFreshAndNotTheClients(t *testing.T) {
	s := newSpawner(t, Config{})
	const probe = "import sys\ndef main():\n    f = sys._getframe()\n    while f is not None:\n        req = f.f_locals.get('req')\n        if isinstance(req, dict) and 'id' in req:\n            return req['id']\n        f = f.f_back\n"
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		w := spawn(t, s)
		resp, err := w.Run(context.Background(), pyexec.Request{ID: "client-chosen", Script: probe, Timeout: 5 * time.Second})
		require.NoError(t, err)
		require.Nil(t, resp.Error, "%+v", resp.Error)
		var id string
		require.NoError(t, json.Unmarshal(resp.Result, &id), "the probe found no id: %s", resp.Result)
		assert.NotContains(t, id, "client-chosen")
		assert.Len(t, id, 32)
		assert.False(t, seen[id], "message id %s used twice", id)
		seen[id] = true
	}
}

// A process that closes its end of the protocol and stays alive (a script
// can) is killed as soon as its channel ends, not waited for. No jail is
// needed: a shell plays the harness.
func TestWorker_ClosedChannelEndsTheWorkerAtOnce(t *testing.T) {
	s := &Spawner{cfg: withLimits(Config{}), log: zap.NewNop(), nsjail: "/bin/sh", args: []string{"-c", "exec 1>&-; exec sleep 60"}}
	w := &Worker{
		id: "w", log: s.log, cg: &workerCgroup{mode: CgroupNone}, cfg: &s.cfg,
		lines: make(chan lineResult, 1), stop: make(chan struct{}),
	}
	require.NoError(t, w.start(s))
	t.Cleanup(w.Kill)
	w.watchHarness(w.cmd.Process.Pid)
	require.NotNil(t, w.pidfd)
	lr, ok := <-w.lines
	resp := w.reply(lr, ok, "m1")
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeSandbox, resp.Error.Code)
	assert.Contains(t, resp.Error.Message, "closed its channel")
	assert.False(t, w.Alive(), "the worker is gone when its answer is")
}

func TestWorker_WithoutCgroupsRlimitsStillFence(t *testing.T) {
	for _, iso := range []Isolation{IsolationStrict, IsolationFork} {
		t.Run(iso.String(), func(t *testing.T) { testWithoutCgroups(t, iso) })
	}
}

func testWithoutCgroups(t *testing.T, iso Isolation) {
	s := newSpawner(t, Config{Cgroup: CgroupNone, MemoryMB: 600, Isolation: iso})
	assert.Equal(t, CgroupNone.String(), s.Limits().Cgroup)
	assert.NotEmpty(t, s.Limits().Warnings)
	worker := func() runner {
		if iso == IsolationFork {
			return fork(t, s)
		}
		return spawn(t, s)
	}
	resp := run(t, worker(), "def main():\n    b = bytearray(2 * 1024**3)\n    return len(b)\n", 5*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeMemoryLimit, resp.Error.Code)

	resp = run(t, worker(), "import os\ndef main():\n    n = 0\n    try:\n        while n < 1000:\n            if os.fork() == 0:\n                import time; time.sleep(60)\n            n += 1\n    except OSError:\n        pass\n    return n\n", 10*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	var n int
	n, err := strconv.Atoi(string(resp.Result))
	require.NoError(t, err)
	assert.Less(t, n, 1000, "RLIMIT_NPROC must stop the forks")
}

func TestWorker_HarnessFailsToStartIsReportedWithStderr(t *testing.T) {
	s := newSpawner(t, Config{})
	// A harness that dies at once: spawn must fail with its stderr, not hang.
	bad := &Spawner{cfg: s.cfg, log: s.log, nsjail: s.nsjail, cg: s.cg, env: s.env, harnessDir: openTempDir(t), emptyDir: s.emptyDir}
	require.NoError(t, os.WriteFile(filepath.Join(bad.harnessDir, "harness.py"), []byte("import sys\nprint('broken harness', file=sys.stderr)\nsys.exit(3)\n"), 0o644))
	bad.args = bad.buildArgs(mustPlan(t, s), false)
	_, err := bad.Spawn(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "broken harness")
}

// openTempDir is a temporary directory that the jail's user can reach
// (t.TempDir's parent is private).
func openTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "pyexec-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func mustPlan(t *testing.T, s *Spawner) *mountPlan {
	facts, err := probePython(s.cfg.PythonPath)
	require.NoError(t, err)
	plan, err := planMounts(facts, s.cfg.PythonPath)
	require.NoError(t, err)
	return plan
}

func TestCheckReachable(t *testing.T) {
	dir := openTempDir(t)
	open := filepath.Join(dir, "open")
	require.NoError(t, os.Mkdir(open, 0o755))
	assert.NoError(t, checkReachable(open, JailUID))

	private := filepath.Join(dir, "private")
	require.NoError(t, os.Mkdir(private, 0o700))
	inner := filepath.Join(private, "python")
	require.NoError(t, os.Mkdir(inner, 0o755))
	err := checkReachable(inner, JailUID)
	require.Error(t, err)
	assert.Contains(t, err.Error(), private)
}

func TestNewSpawner_RefusesBadConfig(t *testing.T) {
	_, err := NewSpawner(withLimits(Config{}), zap.NewNop())
	assert.ErrorContains(t, err, "PythonPath must be set")
	_, err = NewSpawner(Config{PythonPath: "/bin/true", MemoryMB: 512}, zap.NewNop())
	assert.ErrorContains(t, err, "PidsMax, TmpfsMB, MaxOutputBytes, MaxScriptBytes, SpawnTimeout must be set")
	_, err = NewSpawner(withLimits(Config{PythonPath: "/nonexistent/python"}), zap.NewNop())
	assert.ErrorContains(t, err, "/nonexistent/python")
}

func TestNewSpawner_MissingNsjailIsReported(t *testing.T) {
	py := testenv.Python(t)
	_, err := NewSpawner(withLimits(Config{PythonPath: py, NsjailPath: "/nonexistent/nsjail"}), zap.NewNop())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/nonexistent/nsjail")
	notExec := filepath.Join(t.TempDir(), "nsjail")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	_, err = NewSpawner(withLimits(Config{PythonPath: py, NsjailPath: notExec}), zap.NewNop())
	assert.ErrorContains(t, err, "not an executable file")
}

func TestWorker_WaitsAtLowPriorityAndRunsScriptsAtNormal(t *testing.T) {
	s := newSpawner(t, Config{})
	w := spawn(t, s)
	require.NotZero(t, w.harnessPID, "the harness's host pid must be known")
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.harnessPID))
	require.NoError(t, err)
	text := string(data)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+2:])
	assert.Equal(t, "19", fields[16], "an idle worker waits at nice 19") // field 19 of stat
	resp := run(t, w, "import os\ndef main():\n    return os.nice(0)\n", 5*time.Second)
	require.Nil(t, resp.Error)
	assert.Equal(t, "0", string(resp.Result))
}

func TestWorker_CPUTimeIsCappedButNotPinned(t *testing.T) {
	s := newSpawner(t, Config{})
	require.True(t, s.cg.cpuLimited, "this host has a cgroup cpu controller; the cap must be set")
	assert.Equal(t, "cgroup "+s.cg.mode.String()+" CPU bandwidth", s.Limits().CPUEnforcer)
	w := spawn(t, s)
	// Two processes spin for a second of wall time: capped at one CPU,
	// they get about one CPU-second between them, not two.
	resp := run(t, w, `import os, time
def spin(until):
    while time.time() < until:
        pass
def main():
    until = time.time() + 1.0
    kids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            spin(until)
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    t = os.times()
    return {"cpu": t.children_user + t.children_system, "cpus": len(os.sched_getaffinity(0))}
`, 10*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	var got struct {
		CPU  float64 `json:"cpu"`
		CPUs int     `json:"cpus"`
	}
	require.NoError(t, json.Unmarshal(resp.Result, &got))
	assert.Less(t, got.CPU, 1.4, "two spinning processes used %.2f CPU-seconds in one second", got.CPU)
	assert.Equal(t, runtime.NumCPU(), got.CPUs, "a worker may run on any CPU")
}

// The temporary directories of an instance that is gone (killed, so it
// could not remove them) are removed by the next one; those of live
// instances and other files are left alone.
func TestRemoveStaleTemp(t *testing.T) {
	dir := t.TempDir()
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	dead := gone.Process.Pid
	names := map[string]bool{ // name: removed
		fmt.Sprintf("pyexec-%d-harness-1", dead):        true,
		fmt.Sprintf("pyexec-%d-empty-2", dead):          true,
		fmt.Sprintf("pyexec-%d-harness-3", os.Getpid()): false,
		fmt.Sprintf("pyexec-%d-harness-4", 1):           false, // init lives
		fmt.Sprintf("pyexec-%d-other-5", dead):          false,
		"pyexec-harness-6":                              false,
	}
	for name := range names {
		require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
	}
	require.NoError(t, os.Chmod(filepath.Join(dir, fmt.Sprintf("pyexec-%d-empty-2", dead)), 0o555))
	removeStaleTemp(dir)
	for name, removed := range names {
		_, err := os.Stat(filepath.Join(dir, name))
		assert.Equal(t, removed, os.IsNotExist(err), "%s", name)
	}
}
