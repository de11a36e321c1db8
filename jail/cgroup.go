package jail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// cgroups owns the parent cgroup(s) of this service instance and creates one
// child cgroup per worker. The service, not nsjail, manages them: the whole
// worker (nsjail and everything it starts) is placed in its cgroup before
// nsjail runs, so the limits hold from the first instruction, every process
// can be found and killed, and an OOM kill can be told from any other death.
type cgroups struct {
	mode    CgroupMode
	parents []string // v1: one per controller (memory, pids[, cpu]); v2: one
	memory  int64    // bytes, 0 = unlimited
	pids    int      // 0 = unlimited
	// cpu is the CPU time a worker may use per cpuPeriod, in microseconds
	// (0 = unlimited, or no cpu controller on this host: see cpuLimited).
	cpu        int64
	cpuLimited bool
	// v2 only: base is the cgroup the parents are made in, and leaf the
	// service's own leaf under it ("" when none is used).
	base string
	leaf string

	// spare holds the emptied cgroups of fork children, for the next ones
	// (see take); closed is set by close. Both guarded by mu.
	mu     sync.Mutex
	spare  []*workerCgroup
	closed bool
}

// maxSpare bounds the emptied cgroups kept for reuse.
const maxSpare = 64

// spareChargeMax is the most that may stay charged to an emptied cgroup
// (kernel memory freed a moment later, cached pages) for it to be reused;
// the next script starts with it counted against its memory limit.
const spareChargeMax = 4 << 20

// serviceLeaf is the cgroup v2 leaf that the processes of the service's own
// cgroup are moved into, when that cgroup must hold none for its children
// to have controllers (v2's "no internal processes" rule). Its name holds
// no pid: an instance started again from inside it (by a supervisor that
// was moved there too) recognises it and takes its parent as the base, so
// restarts do not nest.
const serviceLeaf = "pyexec-service"

// cpuPeriod is the CFS bandwidth period of the CPU limit: a worker may use
// cpu microseconds of CPU time in each such period, on any CPU.
const cpuPeriod = 100_000

// cgroupParentName is unique per service process so that several instances
// (or test binaries) on one host never touch each other's workers.
func cgroupParentName(pid int) string { return fmt.Sprintf("pyexec-%d", pid) }

// ownCgroupPaths parses /proc/self/cgroup into controller -> path; the v2
// entry is stored under the key "".
func ownCgroupPaths(data []byte) map[string]string {
	paths := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// setupCgroups detects the cgroup version under root and creates this
// instance's parents. want is CgroupAuto, CgroupV1, CgroupV2 or CgroupNone.
// With auto, a host without usable cgroups yields mode none and a warning;
// an explicitly requested version that cannot be set up is an error.
func setupCgroups(root, selfCgroup string, want CgroupMode, memory int64, pids int, cpu int64, log *zap.Logger) (*cgroups, error) {
	if want == CgroupNone {
		return &cgroups{mode: CgroupNone}, nil
	}
	own := map[string]string{}
	if data, err := os.ReadFile(selfCgroup); err == nil {
		own = ownCgroupPaths(data)
	}
	name := cgroupParentName(os.Getpid())
	var errs []error
	if want == CgroupAuto || want == CgroupV2 {
		cg, err := setupV2(root, own[""], name, memory, pids, cpu)
		if err == nil {
			return cg, nil
		}
		errs = append(errs, fmt.Errorf("v2: %w", err))
	}
	if want == CgroupAuto || want == CgroupV1 {
		cg, err := setupV1(root, own, name, memory, pids, cpu)
		if err == nil {
			return cg, nil
		}
		errs = append(errs, fmt.Errorf("v1: %w", err))
	}
	err := errors.Join(errs...)
	if want != CgroupAuto {
		return nil, fmt.Errorf("set up cgroup %s: %w", want, err)
	}
	log.Warn("no usable cgroups: memory and process limits fall back to rlimits",
		zap.Error(err))
	return &cgroups{mode: CgroupNone}, nil
}

func setupV1(root string, own map[string]string, name string, memory int64, pids int, cpu int64) (*cgroups, error) {
	var parents []string
	ctrls := []string{"memory", "pids"}
	// The cpu controller is optional: without it, CPU time is not capped.
	if cpu > 0 && exists(filepath.Join(root, "cpu", "cgroup.procs")) {
		ctrls = append(ctrls, "cpu")
	}
	for _, ctrl := range ctrls {
		mount := filepath.Join(root, ctrl)
		if !exists(filepath.Join(mount, "cgroup.procs")) {
			return nil, fmt.Errorf("controller %s is not mounted at %s", ctrl, mount)
		}
		base := filepath.Join(mount, own[ctrl])
		if !exists(base) {
			base = mount
		}
		removeStaleParents(base, CgroupV1)
		parent := filepath.Join(base, name)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", parent, err)
		}
		parents = append(parents, parent)
	}
	return probed(&cgroups{mode: CgroupV1, parents: parents, memory: memory, pids: pids, cpu: cpu, cpuLimited: len(ctrls) == 3})
}

// probed checks that a worker cgroup accepts its limits (or the limits
// would not be real) and returns cg, or cleans it up.
func probed(cg *cgroups) (*cgroups, error) {
	probe, err := cg.create("probe")
	if err != nil {
		cg.close()
		return nil, err
	}
	probe.remove()
	return cg, nil
}

func setupV2(root, own, name string, memory int64, pids int, cpu int64) (*cgroups, error) {
	if !exists(filepath.Join(root, "cgroup.controllers")) {
		return nil, errors.New("no unified hierarchy at " + root)
	}
	own = filepath.Clean("/" + own)
	leaf := ""
	if isServiceLeaf(filepath.Base(own)) {
		leaf = filepath.Join(root, own)
		own = filepath.Dir(own)
	}
	base := filepath.Join(root, own)
	ctrls, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read controllers: %w", err)
	}
	have := strings.Fields(string(ctrls))
	for _, c := range []string{"memory", "pids"} {
		if !contains(have, c) {
			return nil, fmt.Errorf("controller %s not available in %s", c, base)
		}
	}
	want := []string{"memory", "pids"}
	// The cpu controller is optional: without it, CPU time is not capped.
	cpuLimited := cpu > 0 && contains(have, "cpu")
	if cpuLimited {
		want = append(want, "cpu")
	}
	enable := "+" + strings.Join(want, " +")
	subtree := filepath.Join(base, "cgroup.subtree_control")
	// "No internal processes": to enable controllers for children, base may
	// hold no processes itself, so they (the service and whatever shares
	// its cgroup) move into the service's leaf first. They keep every
	// limit of base, which applies to its whole subtree.
	if err := writeFile(subtree, enable); err != nil {
		leaf = filepath.Join(base, serviceLeaf)
		if err := os.MkdirAll(leaf, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", leaf, err)
		}
		if err := moveProcs(filepath.Join(base, "cgroup.procs"), filepath.Join(leaf, "cgroup.procs")); err != nil {
			return nil, err
		}
		if err := writeFile(subtree, enable); err != nil {
			return nil, fmt.Errorf("enable controllers in %s: %w", base, err)
		}
	}
	removeStaleParents(base, CgroupV2)
	parent := filepath.Join(base, name)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", parent, err)
	}
	if err := writeFile(filepath.Join(parent, "cgroup.subtree_control"), enable); err != nil {
		_ = os.Remove(parent)
		return nil, fmt.Errorf("enable controllers in %s: %w", parent, err)
	}
	return probed(&cgroups{mode: CgroupV2, parents: []string{parent}, memory: memory, pids: pids,
		cpu: cpu, cpuLimited: cpuLimited, base: base, leaf: leaf})
}

// removeStaleParents cleans up after instances that died without closing:
// a parent named pyexec-<pid> whose process is gone is emptied (its jailed
// processes killed) and removed.
func removeStaleParents(base string, mode CgroupMode) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		if pid, rest, ok := instanceName(e.Name()); ok && rest == "" && e.IsDir() && gone(pid) {
			(&cgroups{mode: mode, parents: []string{filepath.Join(base, e.Name())}}).close()
		}
	}
}

func moveProcs(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("read %s: %w", from, err)
	}
	for _, pid := range strings.Fields(string(data)) {
		if err := writeFile(to, pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("move pid %s to %s: %w", pid, to, err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// writeFile writes value to a cgroup (or /proc) file in one write.
//
// It and readFile make plain system calls: os.File would register each
// cgroup file (they can be polled) with the runtime's poller and take it
// off again, four more system calls for every one of the few a script
// costs.
func writeFile(path, value string) error {
	fd, err := openFile(path, unix.O_WRONLY|unix.O_TRUNC)
	if err != nil {
		return err
	}
	n, werr := unix.Write(fd, []byte(value))
	for werr == unix.EINTR {
		n, werr = unix.Write(fd, []byte(value))
	}
	cerr := unix.Close(fd)
	switch {
	case werr != nil:
		return &os.PathError{Op: "write", Path: path, Err: werr}
	case n != len(value):
		return &os.PathError{Op: "write", Path: path, Err: io.ErrShortWrite}
	case cerr != nil:
		return &os.PathError{Op: "close", Path: path, Err: cerr}
	}
	return nil
}

// openFile opens path with flags (and O_CLOEXEC), again if a signal
// interrupted the call.
func openFile(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// readFile reads a small cgroup file whole (see writeFile).
func readFile(path string) ([]byte, error) {
	fd, err := openFile(path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var data []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return data, nil
		}
		data = append(data, buf[:n]...)
	}
}

// create makes the cgroup of one worker and applies the limits.
func (c *cgroups) create(name string) (*workerCgroup, error) {
	w := &workerCgroup{mode: c.mode}
	if c.mode == CgroupNone {
		return w, nil
	}
	for _, p := range c.parents {
		dir := filepath.Join(p, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			w.remove()
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		w.dirs = append(w.dirs, dir)
	}
	var limits [][2]string
	switch c.mode {
	case CgroupV1:
		mem, pids := w.dirs[0], w.dirs[1]
		if c.memory > 0 {
			limits = append(limits, [2]string{filepath.Join(mem, "memory.limit_in_bytes"), strconv.FormatInt(c.memory, 10)})
			if exists(filepath.Join(mem, "memory.memsw.limit_in_bytes")) {
				limits = append(limits, [2]string{filepath.Join(mem, "memory.memsw.limit_in_bytes"), strconv.FormatInt(c.memory, 10)})
			}
		}
		if c.pids > 0 {
			limits = append(limits, [2]string{filepath.Join(pids, "pids.max"), strconv.Itoa(c.pids)})
		}
		if c.cpuLimited {
			cpu := w.dirs[2]
			w.weight = cpuWeight{file: filepath.Join(cpu, "cpu.shares"), idle: "2", normal: "1024"}
			limits = append(limits,
				[2]string{filepath.Join(cpu, "cpu.cfs_period_us"), strconv.Itoa(cpuPeriod)},
				[2]string{filepath.Join(cpu, "cpu.cfs_quota_us"), strconv.FormatInt(c.cpu, 10)})
		}
	case CgroupV2:
		dir := w.dirs[0]
		if c.memory > 0 {
			limits = append(limits, [2]string{filepath.Join(dir, "memory.max"), strconv.FormatInt(c.memory, 10)})
			if exists(filepath.Join(dir, "memory.swap.max")) {
				limits = append(limits, [2]string{filepath.Join(dir, "memory.swap.max"), "0"})
			}
		}
		if c.pids > 0 {
			limits = append(limits, [2]string{filepath.Join(dir, "pids.max"), strconv.Itoa(c.pids)})
		}
		if c.cpuLimited {
			w.weight = cpuWeight{file: filepath.Join(dir, "cpu.weight"), idle: "1", normal: "100"}
			limits = append(limits, [2]string{filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", c.cpu, cpuPeriod)})
		}
	}
	for _, l := range limits {
		if err := writeFile(l[0], l[1]); err != nil {
			w.remove()
			return nil, fmt.Errorf("set %s: %w", l[0], err)
		}
	}
	w.openEvents()
	return w, nil
}

// take returns the cgroup of an earlier fork child, emptied and with the
// same limits, or else a new one named name. Making and removing a cgroup
// costs the kernel more than a whole hello script does in the service.
func (c *cgroups) take(name string) (*workerCgroup, error) {
	c.mu.Lock()
	if n := len(c.spare); n > 0 {
		w := c.spare[n-1]
		c.spare = c.spare[:n-1]
		c.mu.Unlock()
		// OOM kills are counted from here: the counter is the cgroup's
		// whole history.
		w.oomBase = w.oomCount()
		return w, nil
	}
	c.mu.Unlock()
	return c.create(name)
}

// giveBack keeps w for a later child (see take) when no process is left in
// it and almost nothing stays charged to it; otherwise it removes it.
func (c *cgroups) giveBack(w *workerCgroup) {
	if w.reusable() {
		c.mu.Lock()
		if !c.closed && len(c.spare) < maxSpare {
			c.spare = append(c.spare, w)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	w.remove()
}

// close removes the parents, killing anything left in them, and on v2
// puts the service's own cgroup back as it was found (see restoreBase).
func (c *cgroups) close() {
	c.mu.Lock()
	c.closed = true
	for _, w := range c.spare {
		w.closeEvents()
	}
	c.spare = nil
	c.mu.Unlock()
	for _, p := range c.parents {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.IsDir() {
				(&workerCgroup{mode: c.mode, dirs: []string{filepath.Join(p, e.Name())}}).remove()
			}
		}
		_ = os.Remove(p)
	}
	c.restoreBase()
}

// isServiceLeaf recognises the service's leaf, also under the name
// (pyexec-<pid>-service) that earlier versions gave it.
func isServiceLeaf(name string) bool {
	_, rest, ok := instanceName(name)
	return name == serviceLeaf || ok && rest == "-service"
}

// restoreBase undoes, on v2, what setting up did to the service's own
// cgroup, unless another instance still uses it: the controllers enabled
// for the workers are disabled again and the processes in the service's
// leaf move back into base, in that order (no controller may be enabled
// for the children of a cgroup holding processes), then the leaf goes.
// A base that needed the leaf held processes, so it had no controller
// enabled before the service: every one enabled now is the service's.
// Best effort: a leaf left behind is found and reused by the next start.
func (c *cgroups) restoreBase() {
	if c.mode != CgroupV2 || c.leaf == "" || c.base == "" {
		return
	}
	if otherInstances(c.base) {
		return
	}
	subtree := filepath.Join(c.base, "cgroup.subtree_control")
	data, err := os.ReadFile(subtree)
	if err != nil {
		return
	}
	if on := strings.Fields(string(data)); len(on) > 0 {
		if err := writeFile(subtree, "-"+strings.Join(on, " -")); err != nil {
			return
		}
	}
	if moveProcs(filepath.Join(c.leaf, "cgroup.procs"), filepath.Join(c.base, "cgroup.procs")) == nil {
		_ = os.Remove(c.leaf)
	}
}

// otherInstances reports whether base holds the parent of another live
// instance of the service.
func otherInstances(base string) bool {
	entries, err := os.ReadDir(base)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if pid, rest, ok := instanceName(e.Name()); ok && rest == "" && e.IsDir() && pid != os.Getpid() && !gone(pid) {
			return true
		}
	}
	return false
}

// instanceName parses a name an instance of the service gives what it
// owns: "pyexec-<pid>", then rest ("" or from the next "-" on). ok is
// false for any other name.
func instanceName(name string) (pid int, rest string, ok bool) {
	tail, ok := strings.CutPrefix(name, "pyexec-")
	if !ok {
		return 0, "", false
	}
	end := strings.IndexByte(tail, '-')
	if end < 0 {
		end = len(tail)
	}
	pid, err := strconv.Atoi(tail[:end])
	return pid, tail[end:], err == nil && pid > 0
}

// gone reports whether pid, another instance's, no longer runs.
func gone(pid int) bool { return pid != os.Getpid() && !exists(fmt.Sprintf("/proc/%d", pid)) }

// workerCgroup is the cgroup (one directory per v1 controller, or one v2
// directory) of a single worker.
type workerCgroup struct {
	mode CgroupMode
	dirs []string
	// events is the open file of OOM-kill counts (nil without cgroups);
	// set before the cgroup is shared, then only read and closed.
	events *os.File
	// weight is the cgroup's CPU weight (no file without a cpu controller).
	weight cpuWeight
	// oomBase is the OOM-kill count when the cgroup was taken for its
	// current worker (see take).
	oomBase int64
}

// cpuWeight is a cgroup's CPU weight file and its lowest and default
// values (v1 cpu.shares, v2 cpu.weight).
type cpuWeight struct{ file, idle, normal string }

// setIdle gives the cgroup the lowest CPU weight, or the default one back.
// A process alone in a cgroup of its own competes with other cgroups by
// its cgroup's weight, whatever its own scheduling class: SCHED_IDLE only
// orders it within its cgroup. A failure costs only speed.
func (w *workerCgroup) setIdle(idle bool) {
	if w.weight.file == "" {
		return
	}
	v := w.weight.normal
	if idle {
		v = w.weight.idle
	}
	_ = writeFile(w.weight.file, v)
}

// procsFiles lists the cgroup.procs files a process writes itself into.
func (w *workerCgroup) procsFiles() []string {
	files := make([]string, 0, len(w.dirs))
	for _, d := range w.dirs {
		files = append(files, filepath.Join(d, "cgroup.procs"))
	}
	return files
}

// pids lists the processes still in the cgroup.
func (w *workerCgroup) pids() []int {
	var out []int
	for _, f := range w.procsFiles() {
		data, err := readFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 0 {
				out = append(out, pid)
			}
		}
	}
	return out
}

// killAll sends SIGKILL to every process in the cgroup.
func (w *workerCgroup) killAll() {
	if w.mode == CgroupV2 && len(w.dirs) == 1 {
		// cgroup.kill (Linux 5.14+) kills atomically, forks included.
		if writeFile(filepath.Join(w.dirs[0], "cgroup.kill"), "1") == nil {
			return
		}
	}
	// Repeat while new processes show up: one may fork between the read
	// and the kill. Killed processes stay listed until the kernel has torn
	// them down; they need no second signal (a process with SIGKILL pending
	// can no longer fork).
	killed := map[int]bool{}
	for i := 0; i < 10; i++ {
		fresh := false
		for _, pid := range w.pids() {
			if !killed[pid] {
				killed[pid], fresh = true, true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if !fresh {
			return
		}
	}
}

// oomKilled reports whether the kernel's OOM killer fired in this cgroup
// since its current worker took it.
func (w *workerCgroup) oomKilled() bool { return w.oomKills() > 0 }

// oomKills counts the OOM kills in this cgroup since its current worker
// took it.
func (w *workerCgroup) oomKills() int64 { return w.oomCount() - w.oomBase }

// openEvents opens the file of OOM-kill counts, kept open for oomKills.
func (w *workerCgroup) openEvents() {
	name := map[CgroupMode]string{CgroupV1: "memory.oom_control", CgroupV2: "memory.events"}[w.mode]
	if name == "" || len(w.dirs) == 0 {
		return
	}
	if f, err := os.Open(filepath.Join(w.dirs[0], name)); err == nil {
		w.events = f
	}
}

// oomCount reads the cgroup's OOM-kill counter. The file stays open;
// reading it again from the start gives the current count.
func (w *workerCgroup) oomCount() int64 {
	if w.events == nil {
		return 0
	}
	var buf [512]byte
	n, err := w.events.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return 0
	}
	return counter(buf[:n], "oom_kill")
}

// counter reads "name value" from the contents of a flat-keyed cgroup file.
func counter(data []byte, name string) int64 {
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// reusable reports whether no process is left in the cgroup and almost
// nothing stays charged to it (see spareChargeMax).
func (w *workerCgroup) reusable() bool {
	return w.mode != CgroupNone && len(w.dirs) > 0 && len(w.pids()) == 0 && w.charged() <= spareChargeMax
}

// charged reads the memory charged to the cgroup (0 without a memory
// controller).
func (w *workerCgroup) charged() int64 {
	name := map[CgroupMode]string{CgroupV1: "memory.usage_in_bytes", CgroupV2: "memory.current"}[w.mode]
	if name == "" || len(w.dirs) == 0 {
		return 0
	}
	data, err := readFile(filepath.Join(w.dirs[0], name))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return n
}

func (w *workerCgroup) closeEvents() {
	if w.events != nil {
		_ = w.events.Close()
		w.events = nil
	}
}

// remove kills what is left and deletes the directories. rmdir of a cgroup
// fails while the kernel still tears processes down, so it retries briefly.
func (w *workerCgroup) remove() {
	if len(w.dirs) == 0 {
		return
	}
	w.closeEvents()
	w.killAll()
	deadline := time.Now().Add(2 * time.Second)
	for _, d := range w.dirs {
		for {
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
				break
			}
			w.killAll()
			time.Sleep(5 * time.Millisecond)
		}
	}
}
