package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/internal/testenv"
)

// hostCgroups is what the restart test needs to know of the host's
// cgroups: the version, and the directory of the controllers it puts its
// container cgroup in (one for v2, one per controller for v1).
type hostCgroups struct {
	v2    bool
	roots []string
}

func detectCgroups(t *testing.T) hostCgroups {
	const root = "/sys/fs/cgroup"
	if data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		have := strings.Fields(string(data))
		if contains(have, "memory") && contains(have, "pids") {
			// The root may hold processes and still give its children
			// controllers.
			require.NoError(t, os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory +pids"), 0o644))
			return hostCgroups{v2: true, roots: []string{root}}
		}
	}
	var h hostCgroups
	for _, c := range []string{"memory", "pids", "cpu"} {
		if _, err := os.Stat(filepath.Join(root, c, "cgroup.procs")); err == nil {
			h.roots = append(h.roots, filepath.Join(root, c))
		}
	}
	// Every host this project runs its tests on has cgroups: a missing
	// one is a failure, not a reason to skip.
	require.GreaterOrEqual(t, len(h.roots), 2, "no usable cgroups (memory and pids) on this host")
	return h
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// cgroupOf is pid's cgroup path (v2), or its memory controller's (v1).
func cgroupOf(t *testing.T, pid int, v2 bool) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if (v2 && parts[1] == "") || (!v2 && contains(strings.Split(parts[1], ","), "memory")) {
			return parts[2]
		}
	}
	t.Fatalf("no cgroup of pid %d", pid)
	return ""
}

func depth(path string) int { return len(strings.Split(strings.Trim(path, "/"), "/")) }

// startIn starts argv with its first process placed in the cgroups whose
// cgroup.procs files are given, as a container runtime or a supervisor
// would.
func startIn(t *testing.T, procs []string, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"-c", `for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"`, "sh"}, procs...)
	args = append(append(args, "--"), argv...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	return cmd
}

// dirsUnder lists every directory below top, with the pids each holds.
func dirsUnder(top string) map[string][]int {
	out := map[string][]int{}
	_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || path == top {
			return nil
		}
		data, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		var pids []int
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		out[path] = pids
		return nil
	})
	return out
}

// TestE2E_RestartInASharedCgroup starts the service in a cgroup that also
// holds another process (a container's, with a supervisor in it), kills it
// with SIGKILL and starts it again from where the other process then is.
// The second start must sit at the same depth, clean up the dead
// instance's cgroups and processes, and leave the other process alive and
// under the same limit; a clean exit must leave no cgroup of its own.
func TestE2E_RestartInASharedCgroup(t *testing.T) {
	py := testenv.Python(t)
	h := detectCgroups(t)
	bin := serviceBinary(t)

	// The container's cgroup, with a memory limit to check later.
	name := fmt.Sprintf("pyexec-container-%d", os.Getpid())
	var tops, procs []string
	for _, r := range h.roots {
		top := filepath.Join(r, name)
		require.NoError(t, os.Mkdir(top, 0o755))
		tops = append(tops, top)
		procs = append(procs, filepath.Join(top, "cgroup.procs"))
	}
	limitFile := filepath.Join(tops[0], "memory.max")
	if !h.v2 {
		limitFile = filepath.Join(tops[0], "memory.limit_in_bytes")
	}
	const limit = "4294967296"
	require.NoError(t, os.WriteFile(limitFile, []byte(limit), 0o644))

	other := startIn(t, procs, nil, "sleep", "600")
	t.Cleanup(func() {
		_ = other.Process.Kill()
		_ = other.Wait()
		for _, top := range tops {
			var dirs []string
			for dir := range dirsUnder(top) {
				dirs = append(dirs, dir)
			}
			sort.Slice(dirs, func(i, j int) bool { return depth(dirs[i]) > depth(dirs[j]) })
			for _, dir := range append(dirs, top) {
				_ = os.Remove(dir)
			}
		}
	})
	require.Eventually(t, func() bool { return strings.HasPrefix(cgroupOf(t, other.Process.Pid, h.v2), "/"+name) },
		10*time.Second, 10*time.Millisecond)

	spawnTimeout := os.Getenv("PYEXEC_SPAWN_TIMEOUT")
	if spawnTimeout == "" {
		spawnTimeout = "30"
	}
	start := func(from []string) (*exec.Cmd, string) {
		port, err := freeTestPort()
		require.NoError(t, err)
		env := append(os.Environ(), "PORT="+port, "PYEXEC_HOST=127.0.0.1", "PYEXEC_PYTHON="+py,
			"PYEXEC_POOL_SIZE=1", "PYEXEC_LOG_LEVEL=warn", "PYEXEC_SPAWN_TIMEOUT="+spawnTimeout)
		cmd := startIn(t, from, env, bin)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		base := "http://127.0.0.1:" + port
		require.Eventually(t, func() bool {
			res, err := http.Get(base + "/health")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == 200
		}, 10*time.Minute, 100*time.Millisecond, "the service comes up")
		return cmd, base
	}

	first, _ := start(procs)
	firstDepth := depth(cgroupOf(t, first.Process.Pid, h.v2))
	deadParent := fmt.Sprintf("pyexec-%d", first.Process.Pid)
	var jailed []int
	for _, top := range tops {
		for dir, pids := range dirsUnder(top) {
			if contains(strings.Split(dir, "/"), deadParent) {
				jailed = append(jailed, pids...)
			}
		}
	}
	if !h.v2 {
		// On v1 a controller the container has no cgroup in (cpu, say)
		// holds the parent at its root.
		jailed = append(jailed, jailedAt(h, deadParent)...)
	}
	require.NotEmpty(t, jailed, "the first instance's worker runs in its cgroups")

	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()

	// A supervisor starts it again from its own cgroup, wherever the first
	// instance left it.
	var again []string
	for _, r := range h.roots {
		dir := cgroupOf(t, other.Process.Pid, h.v2)
		if !h.v2 {
			dir = cgroupOfController(t, other.Process.Pid, filepath.Base(r))
		}
		again = append(again, filepath.Join(r, dir, "cgroup.procs"))
	}
	second, base := start(again)
	assert.Equal(t, firstDepth, depth(cgroupOf(t, second.Process.Pid, h.v2)), "a restart does not nest")
	for _, top := range append(tops, h.roots...) {
		entries, _ := os.ReadDir(top)
		for _, e := range entries {
			assert.NotEqual(t, deadParent, e.Name(), "the dead instance's cgroup is removed from %s", top)
		}
		for dir := range dirsUnder(top) {
			assert.NotContains(t, strings.Split(dir, "/"), deadParent, "the dead instance's cgroup is removed: %s", dir)
		}
	}
	for _, pid := range jailed {
		assert.False(t, testenv.Alive(pid), "jailed process %d of the dead instance is left", pid)
	}
	assert.True(t, testenv.Alive(other.Process.Pid), "the other process lives on")
	assert.True(t, strings.HasPrefix(cgroupOf(t, other.Process.Pid, h.v2), "/"+name), "the other process stays in the container's cgroup")
	got, err := os.ReadFile(limitFile)
	require.NoError(t, err)
	assert.Equal(t, limit, strings.TrimSpace(string(got)), "the container's limit is unchanged")

	s := &service{t: t, base: base}
	r := s.run("def main():\n    return 'after restart'\n", 30)
	assert.JSONEq(t, `"after restart"`, string(r.Body.Result), "%+v", r.Body.Error)

	require.NoError(t, second.Process.Signal(syscall.SIGTERM))
	st, err := second.Process.Wait()
	require.NoError(t, err)
	assert.True(t, st.Success(), "clean exit: %v", st)
	for _, top := range tops {
		for dir, pids := range dirsUnder(top) {
			assert.NotEmpty(t, pids, "an empty cgroup is left behind: %s", dir)
		}
	}
	assert.Equal(t, "/"+name, cgroupOf(t, other.Process.Pid, h.v2), "the other process is back where it started")
}

// cgroupOfController is pid's cgroup in one v1 hierarchy.
func cgroupOfController(t *testing.T, pid int, ctrl string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && contains(strings.Split(parts[1], ","), ctrl) {
			return parts[2]
		}
	}
	t.Fatalf("pid %d has no %s cgroup", pid, ctrl)
	return ""
}

// jailedAt lists the processes in the workers' cgroups of a parent named
// parent at the root of each v1 hierarchy.
func jailedAt(h hostCgroups, parent string) []int {
	var pids []int
	for _, r := range h.roots {
		for _, p := range dirsUnder(filepath.Join(r, parent)) {
			pids = append(pids, p...)
		}
	}
	return pids
}
