package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack is one adversarial script. Scripts that probe for access return
// the list of what they obtained ("leaks"); it must be empty. Scripts that
// try to break the service are judged by their outcome type. After every
// attack a normal request must still succeed.
type attack struct {
	name    string
	script  string
	timeout float64
	// leaks: the result is a JSON list of what the attacker got; it must
	// be empty. Otherwise outcome lists the acceptable error types ("ok"
	// for success) and check, if set, inspects the answer further.
	leaks   bool
	outcome []string
	check   func(t *testing.T, r result)
	// amd64Only: the script uses x86_64 system call numbers.
	amd64Only bool
}

// x86_64 numbers of the system calls the seccomp policy refuses (see
// jail/seccomp.go), probed with invalid arguments: without the filter many
// would fail with EFAULT or EINVAL, with it they all fail with EPERM.
const deniedSyscallProbe = `
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
NUMBERS = {"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_getfd": 438, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "unshare": 272, "setns": 308, "fsopen": 430, "fsmount": 432, "fsconfig": 431, "fspick": 433,
    "move_mount": 429, "open_tree": 428, "mount_setattr": 442, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "keyctl": 250, "add_key": 248, "request_key": 249, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "kexec_load": 246, "kexec_file_load": 320,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167,
    "swapoff": 168, "acct": 163, "quotactl": 179, "syslog": 103, "vhangup": 153,
    "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
    "iopl": 172, "ioperm": 173, "uselib": 134, "lookup_dcookie": 212,
    "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
    "mq_notify": 244, "mq_getsetattr": 245}
def main():
    leaks = []
    for name, nr in NUMBERS.items():
        ctypes.set_errno(0)
        r = libc.syscall(nr, 0, 0, 0, 0, 0)
        e = ctypes.get_errno()
        if r != -1 or e != errno.EPERM:
            leaks.append("%s returned %d errno %d" % (name, r, e))
    # Namespace-creating clone flags are refused; clone3 is "not implemented".
    for flag in (0x10000000, 0x20000000, 0x40000000, 0x20000, 0x4000000, 0x8000000, 0x2000000):
        ctypes.set_errno(0)
        r = libc.syscall(56, flag | 17, 0, 0, 0, 0)
        if r == 0:
            libc.syscall(60, 0)  # the child leaves at once
        if r != -1 or ctypes.get_errno() != errno.EPERM:
            leaks.append("clone with flag %#x" % flag)
    ctypes.set_errno(0)
    if libc.syscall(435, 0, 0) != -1 or ctypes.get_errno() != errno.ENOSYS:
        leaks.append("clone3 errno %d" % ctypes.get_errno())
    status = open("/proc/self/status").read()
    if "Seccomp:\t2" not in status:
        leaks.append("no seccomp filter")
    return leaks
`

// attacks lists the attacks as they fare in iso. projectTop is the first component of the
// virtualenv's path (work for /work/main/.venv): the jail mounts the
// interpreter's prefix at its own path, so that one top-level directory is
// expected inside the jail wherever the project is checked out.
func attacks(iso jail.Isolation, canary, hostAbstract, projectTop string, servicePort int) []attack {
	flooded := ""
	if iso == jail.IsolationFork {
		flooded = "output_limit"
	}
	return []attack{
		// Reading the host.
		{name: "read /etc/shadow", leaks: true, script: probe(`open("/etc/shadow").read()`)},
		{name: "read /etc/passwd", leaks: true, script: probe(`open("/etc/passwd").read()`)},
		{name: "read a host canary by path", leaks: true, script: probe(fmt.Sprintf(`open(%q).read()`, canary))},
		{name: "list the host's root", leaks: true, script: fmt.Sprintf(`import os
def main():
    project = %q
    extra = set(os.listdir("/")) - {"dev", "harness", "lib", "lib64", "proc", "tmp", "usr", "bin", "sbin", project}
    host_only = [d for d in ("root", "home", "var", "etc", "boot", "sys", "srv", "mnt") if d != project and os.path.exists("/" + d)]
    return sorted(extra) + host_only
`, projectTop)},
		{name: "host processes through /proc", leaks: true, script: `import os
def main():
    leaks = []
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for p in pids:
        try:
            cmd = open("/proc/%s/cmdline" % p, "rb").read()
        except OSError:
            continue
        if b"pyexecd" in cmd or b"systemd" in cmd or b"go-build" in cmd or b"nsjail" in cmd:
            leaks.append(cmd.decode(errors="replace"))
    if len(pids) > 10:
        leaks.append("sees %d processes" % len(pids))
    return leaks
`},
		{name: "/proc/1 is the jail's own init", leaks: true, script: `def main():
    try:
        env = open("/proc/1/environ", "rb").read()
    except PermissionError:
        return []  # fork isolation: the zygote is not dumpable
    return ["host environment in /proc/1/environ"] if b"PYEXEC_ATTACK_SECRET" in env else []
`},
		{name: "escape through /proc/self/root", leaks: true, script: `import os
def main():
    return [] if sorted(os.listdir("/proc/self/root")) == sorted(os.listdir("/")) else ["different root"]
`},
		{name: "escape through /proc/1/root and /proc/1/cwd", leaks: true, script: probe(`open("/proc/1/root/etc/shadow").read()`, `open("/proc/1/cwd/../../etc/shadow").read()`)},
		{name: "escape through a symlink", leaks: true, script: `import os
def main():
    os.symlink("/etc", "/tmp/etc-link")
    try:
        return ["read " + open("/tmp/etc-link/shadow").read()[:10]]
    except OSError:
        return []
`},
		{name: "escape through ..", leaks: true, script: probe(`open("/tmp/../../../../etc/shadow").read()`, `open("/usr/../../../root/.bashrc").read()`)},
		{name: "read /sys and device files", leaks: true, script: probe(`open("/sys/kernel/hostname").read()`, `open("/dev/mem", "rb").read(1)`, `open("/dev/sda", "rb").read(1)`, `open("/dev/kmsg").read(1)`)},

		// Writing.
		{name: "write outside /tmp", leaks: true, script: fmt.Sprintf(`import os
def main():
    leaks = []
    for path in ["/evil", "/usr/evil", "/usr/lib/evil", "/proc/evil", "/dev/evil", %q]:
        try:
            open(path, "w").write("x")
            leaks.append("wrote " + path)
        except OSError:
            pass
    return leaks
`, filepath.Join(filepath.Dir(os.Getenv("PYEXEC_PYTHON")), "evil"))},
		{name: "fill /tmp", leaks: true, script: `import os
def main():
    written = 0
    try:
        with open("/tmp/fill", "wb") as f:
            for _ in range(300):
                f.write(b"x" * (1 << 20))
                written += 1 << 20
    except OSError:
        pass
    return [] if written <= 64 << 20 else ["wrote %d bytes" % written]
`},
		{name: "chmod and chown to root", leaks: true, script: probe(`os.chown("/tmp", 0, 0)`, `os.chmod("/usr", 0o777)`)},
		{name: "mknod a device", leaks: true, script: probe(`os.mknod("/tmp/mem", 0o600 | 0o020000, os.makedev(1, 1))`)},

		// Network.
		{name: "TCP to the service's own port", leaks: true, script: probe(fmt.Sprintf(`socket.create_connection(("127.0.0.1", %d), timeout=2)`, servicePort))},
		{name: "TCP to the outside", leaks: true, script: probe(`socket.create_connection(("1.1.1.1", 443), timeout=2)`, `socket.create_connection(("::1", 22), timeout=2)`)},
		{name: "UDP to the outside", leaks: true, script: probe(`socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))`)},
		{name: "DNS", leaks: true, script: probe(`socket.getaddrinfo("pypi.org", 443)`)},
		{name: "raw socket", leaks: true, script: probe(`socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)`, `socket.socket(socket.AF_PACKET, socket.SOCK_RAW)`)},
		{name: "host abstract unix socket", leaks: true, script: probe(fmt.Sprintf(`socket.socket(socket.AF_UNIX).connect(%q)`, "\x00"+hostAbstract))},
		{name: "interfaces other than loopback", leaks: true, script: `import socket
def main():
    return [name for _, name in socket.if_nameindex() if name != "lo"]
`},

		// Privilege.
		{name: "setuid to root", leaks: true, script: probe(`os.setuid(0)`, `os.setgid(0)`, `os.setgroups([0])`)},
		{name: "raise rlimits", leaks: true, script: probe(`resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))`, `resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))`)},
		{name: "sethostname", leaks: true, script: probe(`ctypes_call("sethostname", b"evil", 4)`)},
		{name: "refused system calls fail inside the jail", leaks: true, script: deniedSyscallProbe, amd64Only: true},
		{name: "capabilities", leaks: true, script: `def main():
    caps = [l.split() for l in open("/proc/self/status") if l.startswith("Cap")]
    return ["%s %s" % (c[0], c[1]) for c in caps if c[1] != "0000000000000000"]
`},

		// Resource exhaustion.
		{name: "fork bomb", timeout: 2, outcome: []string{"timeout", "sandbox_error", "runtime_error", "ok"}, script: `import os
def main():
    while True:
        try:
            os.fork()
        except OSError:
            pass
`},
		{name: "thread bomb", timeout: 3, outcome: []string{"runtime_error", "timeout", "memory_limit", "sandbox_error"}, script: `import threading, time
def main():
    while True:
        threading.Thread(target=time.sleep, args=(100,), daemon=True).start()
`},
		{name: "memory bomb", timeout: 5, outcome: []string{"memory_limit"}, script: "def main():\n    return len(bytearray(8 * 1024**3))\n"},
		{name: "gradual growth", timeout: 20, outcome: []string{"memory_limit"}, script: "def main():\n    x = []\n    while True:\n        x.append(b'y' * (1 << 20))\n"},
		{name: "numpy allocation", timeout: 10, outcome: []string{"memory_limit"}, script: "import numpy as np\ndef main():\n    return float(np.ones((1 << 30,)).sum())\n"},
		{name: "deep recursion", timeout: 10, outcome: []string{"runtime_error", "sandbox_error", "memory_limit"}, script: "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\ndef main():\n    return f(0)\n"},
		{name: "pathological source", outcome: []string{"validation_error"}, script: "def main():\n    return " + strings.Repeat("(", 100000) + strings.Repeat(")", 100000) + "\n"},
		// Strict cuts the output and returns the result; fork stops the
		// script at the cap (output_limit). Either way the first MiB is
		// kept and flagged.
		{name: "100 MB of stdout", timeout: 20, outcome: []string{"ok", "output_limit"}, script: "import sys\ndef main():\n    for _ in range(100):\n        sys.stdout.write('z' * (1 << 20))\n    return 1\n",
			check: func(t *testing.T, r result) {
				assert.Equal(t, flooded, errType(r))
				assert.True(t, r.Body.StdoutTruncated)
				assert.Equal(t, strings.Repeat("z", 1<<20), r.Body.Stdout)
			}},
		{name: "300 MB result", timeout: 20, outcome: []string{"output_limit", "memory_limit"}, script: "def main():\n    return 'r' * (300 << 20)\n"},
		{name: "output after main returns", timeout: 5, outcome: []string{"ok"}, script: `import threading, time, os
def late():
    time.sleep(0.05)
    for _ in range(1000):
        os.write(1, b"late\n")
def main():
    threading.Thread(target=late).start()
    return "done"
`, check: func(t *testing.T, r result) { assert.JSONEq(t, `"done"`, string(r.Body.Result)) }},

		// The harness and the protocol.
		// The harness is pid 1 of its namespace and its parent lies outside:
		// the signal either reaches nothing or ends the script's own jail.
		{name: "kill the parent", outcome: []string{"sandbox_error", "ok", "runtime_error"}, script: "import os, signal\ndef main():\n    os.kill(os.getppid() or 1, signal.SIGKILL)\n    os.kill(0, signal.SIGKILL)\n"},
		{name: "kill(-1)", outcome: []string{"sandbox_error", "ok", "runtime_error"}, script: "import os, signal\ndef main():\n    if os.fork() == 0:\n        os.kill(-1, signal.SIGKILL)\n        os._exit(0)\n    os.wait()\n    return 1\n"},
		{name: "close the protocol descriptors", outcome: []string{"sandbox_error"}, script: "import os\ndef main():\n    for fd in range(3, 64):\n        try:\n            os.close(fd)\n        except OSError:\n            pass\n    return 1\n"},
		{name: "write garbage to the protocol descriptors", outcome: []string{"sandbox_error", "ok"}, script: `import os
def main():
    for fd in range(3, 64):
        try:
            os.write(fd, b'{"id": "forged", "result": 666}\n garbage \x00\xff\n')
        except OSError:
            pass
    return 1
`, check: func(t *testing.T, r result) { assert.NotEqual(t, "666", string(r.Body.Result)) }},
		{name: "forge a reply on the protocol descriptor", outcome: []string{"sandbox_error", "ok"}, script: `import os, gc
def main():
    for fd in range(3, 64):
        try:
            os.write(fd, b'{"result": 666, "id": "guess", "error": null}\n')
        except OSError:
            pass
    return 1
`, check: func(t *testing.T, r result) { assert.NotEqual(t, "666", string(r.Body.Result)) }},
		{name: "ignore SIGTERM and SIGALRM to outlive the timeout", timeout: 1, outcome: []string{"timeout"}, script: `import signal, time
def main():
    for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
        signal.signal(s, signal.SIG_IGN)
    while True:
        time.sleep(0.01)
`},
		{name: "return a lone surrogate", outcome: []string{"invalid_result"}, script: "def main():\n    return ['ok', '\\udc80']\n",
			check: func(t *testing.T, r result) { assert.Contains(t, r.Body.Error.Message, "surrogate") }},
		{name: "sys.exit", outcome: []string{"runtime_error"}, script: "import sys\ndef main():\n    sys.exit(0)\n"},
		{name: "os._exit", outcome: []string{"sandbox_error"}, script: "import os\ndef main():\n    os._exit(0)\n"},
		{name: "raise SystemExit", outcome: []string{"runtime_error"}, script: "def main():\n    raise SystemExit(3)\n"},
		{name: "raise KeyboardInterrupt", outcome: []string{"runtime_error"}, script: "def main():\n    raise KeyboardInterrupt\n"},
		{name: "atexit hook", outcome: []string{"ok"}, script: "import atexit\natexit.register(lambda: print('atexit ran'))\ndef main():\n    return 5\n",
			check: func(t *testing.T, r result) { assert.JSONEq(t, "5", string(r.Body.Result)) }},
		{name: "non-UTF-8 output", outcome: []string{"ok"}, script: "import os, sys\ndef main():\n    os.write(1, b'\\xff\\xfe bad \\xc3\\n')\n    sys.stderr.buffer.write(b'\\x80')\n    return 1\n",
			check: func(t *testing.T, r result) { assert.Contains(t, r.Body.Stdout, "\ufffd") }},
		{name: "the service's environment and arguments", leaks: true, script: `import os, sys
def main():
    leaks = [k for k in os.environ if k.startswith(("PYEXEC_ATTACK", "GO", "HOME=/root"))]
    leaks += [a for a in sys.argv if "pyexecd" in a]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if b"PYEXEC_ATTACK_SECRET" in open("/proc/%s/environ" % p, "rb").read():
                    leaks.append("environ of " + p)
            except OSError:
                pass
    return leaks
`},
		{name: "state left in /tmp for the next script", leaks: true, script: `import os
def main():
    leftovers = [f for f in os.listdir("/tmp") if f.startswith("pyexec-attack-mark")]
    open("/tmp/pyexec-attack-mark", "w").write("x")
    return leftovers
`},
	}
}

// probe builds a script that tries each statement and reports those that
// did not raise. Only a refusal (OSError, or ValueError from resource)
// counts as contained: any other exception means the probe itself is
// broken, and it propagates, so the attack's test fails instead of passing.
func probe(statements ...string) string {
	var b strings.Builder
	b.WriteString("import os, socket, resource, ctypes\n")
	b.WriteString("def ctypes_call(name, *args):\n    libc = ctypes.CDLL(None, use_errno=True)\n    if getattr(libc, name)(*args) != 0:\n        raise OSError(ctypes.get_errno(), name)\n")
	b.WriteString("def main():\n    leaks = []\n")
	for i, s := range statements {
		fmt.Fprintf(&b, "    try:\n        %s\n        leaks.append(%q)\n    except (OSError, ValueError):\n        pass\n", s, fmt.Sprintf("statement %d succeeded: %s", i+1, s))
	}
	b.WriteString("    return leaks\n")
	return b.String()
}

func TestAttacks_MinimalValidation(t *testing.T) { inEveryMode(t, testAttacks) }

func testAttacks(t *testing.T, iso jail.Isolation) {
	t.Setenv("PYEXEC_ATTACK_SECRET", "do-not-leak")
	canaryDir, err := os.MkdirTemp("/var/tmp", "pyexec-canary-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(canaryDir) })
	canary := filepath.Join(canaryDir, "secret.txt")
	require.NoError(t, os.WriteFile(canary, []byte("host secret"), 0o644))
	require.NoError(t, os.Chmod(canaryDir, 0o755))

	abstract := fmt.Sprintf("pyexec-attack-%d", time.Now().UnixNano())
	uln, err := net.Listen("unix", "@"+abstract)
	require.NoError(t, err)
	t.Cleanup(func() { uln.Close() })
	unixHits := make(chan struct{}, 16)
	go func() {
		for {
			c, err := uln.Accept()
			if err != nil {
				return
			}
			c.Close()
			unixHits <- struct{}{}
		}
	}()

	s := startService(t, iso, func(c *Config) { c.Validation = jail.ValidationMinimal; c.PoolSize = 4 })
	_, portStr, err := net.SplitHostPort(s.m.Addr)
	require.NoError(t, err)
	var port int
	fmt.Sscan(portStr, &port)

	list := attacks(iso, canary, abstract, topDir(testenv.Python(t)), port)
	require.GreaterOrEqual(t, len(list), 40)
	type row struct {
		Mode    string `json:"mode"`
		Name    string `json:"name"`
		Outcome string `json:"outcome"`
		Got     string `json:"got"`
		Passed  bool   `json:"passed"`
	}
	var rows []row
	if path := os.Getenv("PYEXEC_ATTACK_REPORT"); path != "" {
		// make soak renders docs/RELIABILITY.md from this run's outcomes.
		t.Cleanup(func() {
			data, _ := json.MarshalIndent(rows, "", "  ")
			assert.NoError(t, os.WriteFile(path+"."+iso.String(), data, 0o644))
		})
	}
	for _, a := range list {
		t.Run(a.name, func(t *testing.T) {
			if a.amd64Only && runtime.GOARCH != "amd64" {
				t.Skip("the system call numbers in this probe are x86_64's")
			}
			r := s.run(a.script, a.timeout)
			got := errType(r)
			if got == "" {
				got = "ok"
			}
			defer func() {
				what := "nothing"
				if a.leaks && r.Body.Error == nil && string(r.Body.Result) != "[]" {
					what = string(r.Body.Result)
				}
				rows = append(rows, row{Mode: iso.String(), Name: a.name, Outcome: got, Got: what, Passed: !t.Failed()})
			}()
			switch {
			case a.leaks:
				require.Nil(t, r.Body.Error, "the probe itself failed: %+v", r.Body.Error)
				var leaks []string
				require.NoError(t, json.Unmarshal(r.Body.Result, &leaks), "%s", r.Body.Result)
				assert.Empty(t, leaks, "the attacker got something")
			default:
				assert.Contains(t, a.outcome, got, "outcome %s: %+v", got, r.Body.Error)
			}
			if a.check != nil {
				a.check(t, r)
			}
			assert.Contains(t, []int{200, 400}, r.Status)
			s.healthy()
		})
	}
	select {
	case <-unixHits:
		t.Error("the host's abstract unix socket got a connection from the jail")
	default:
	}
	n, ok := s.m.spawner.Processes()
	if ok {
		require.Eventually(t, func() bool { n, _ = s.m.spawner.Processes(); return n <= procsPerWorker(iso)*4 }, 10*time.Second, 50*time.Millisecond,
			"jailed processes left after the attacks: %d", n)
	}
}

// topDir is the first component of an absolute path: work for /work/main.
func topDir(path string) string {
	return strings.SplitN(strings.TrimPrefix(filepath.Clean(path), "/"), "/", 2)[0]
}

// A probe reports a statement that succeeded, counts a refusal as
// contained, and fails loudly when a statement is broken. Run with the
// host's interpreter: no jail needed.
func TestProbe_ABrokenProbeDoesNotReadAsContained(t *testing.T) {
	py := testenv.Python(t)
	runProbe := func(statements ...string) (string, error) {
		out, err := exec.Command(py, "-I", "-c", probe(statements...)+"\nimport json\nprint(json.dumps(main()))\n").CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := runProbe(`open("/nonexistent/pyexec-probe").read()`, `os.getcwd()`)
	require.NoError(t, err, out)
	assert.Equal(t, `["statement 2 succeeded: os.getcwd()"]`, out)
	out, err = runProbe(`open("/nonexistent/pyexec-probe").read()`, `no_such_name()`)
	assert.Error(t, err, "a broken statement must fail the probe: %s", out)
	assert.Contains(t, out, "NameError")
}
