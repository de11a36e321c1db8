package jail

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/pyharness"
)

// filterProbe installs the filter with the harness's install_seccomp (the
// program arrives on stdin) and prints one JSON object: what each probe
// got, "ok" or the errno's name. A probe's outcome without the filter
// differs from its outcome with it, as root or not.
const filterProbe = `
import ctypes, errno, importlib.util, json, os, sys, threading

spec = importlib.util.spec_from_file_location("harness", sys.argv[1])
harness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)
nr = json.loads(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
# clone runs with the GIL held, so a child it makes can run Python.
pylibc = ctypes.PyDLL(None, use_errno=True)
for lib in (libc, pylibc):
    lib.syscall.restype = ctypes.c_long
out = {}

def outcome(fn, *args):
    ctypes.set_errno(0)
    ret = fn(*args)
    if ret != -1:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), "?")

def raises(blob):
    try:
        harness.install_seccomp(blob)
    except OSError as e:
        return errno.errorcode.get(e.errno, "?")
    return "ok"

def clone(flags):
    ctypes.set_errno(0)
    pid = pylibc.syscall(ctypes.c_long(nr["clone"]), ctypes.c_ulong(flags), *[ctypes.c_ulong(0)] * 4)
    if pid == 0:
        os._exit(0)
    if pid < 0:
        return errno.errorcode.get(ctypes.get_errno(), "?")
    return "ok" if os.waitpid(pid, 0)[1] == 0 else "child failed"

def status(field):
    with open("/proc/self/status") as f:
        return [l.split()[1] for l in f if l.startswith(field + ":")][0]

blob = sys.stdin.buffer.read()
out["short_program"] = raises(blob[:-1])
out["empty_program"] = raises(b"")
out["bad_program"] = raises(b"\xff\xff\0\0\0\0\0\0")

go = threading.Event()
def early():
    go.wait(30)
    out["earlier_thread_unshare"] = outcome(libc.unshare, 0)
earlier = threading.Thread(target=early)
earlier.start()
try:
    harness.install_seccomp(blob)
finally:
    go.set()
earlier.join(30)

out["seccomp_mode"] = status("Seccomp")
out["no_new_privs"] = status("NoNewPrivs")
out["getpid"] = "ok" if os.getpid() > 0 else "no pid"
out["unshare"] = outcome(libc.unshare, 0)
out["unshare_newns"] = outcome(libc.unshare, nr["newns"])
out["clone3"] = outcome(libc.syscall, ctypes.c_long(nr["clone3"]), ctypes.c_ulong(0), ctypes.c_ulong(0))
# PTRACE_PEEKUSER of pid 0: no such process, never a tracer.
out["ptrace"] = outcome(libc.syscall, ctypes.c_long(nr["ptrace"]), ctypes.c_ulong(3), *[ctypes.c_ulong(0)] * 3)
out["mount"] = outcome(libc.mount, None, b"/nonexistent-pyexec", None, ctypes.c_ulong(0), None)
pid = os.fork()
if pid == 0:
    os._exit(0)
out["fork"] = "ok" if os.waitpid(pid, 0)[1] == 0 else "child failed"
out["clone"] = clone(nr["sigchld"])
out["clone_newnet"] = clone(nr["newnet"] | nr["sigchld"])
later = threading.Thread(target=lambda: out.__setitem__("thread", "ok"))
later.start()
later.join(30)
import numpy
out["numpy"] = "ok" if float((numpy.arange(12.0).reshape(3, 4) @ numpy.ones(4)).sum()) == 66.0 else "wrong"
if nr["x32"]:
    out["x32_getpid"] = outcome(libc.syscall, ctypes.c_long(nr["x32"] | nr["getpid"]))
print(json.dumps(out))
`

func TestSeccompFilter_InstalledByTheHarnessRefusesWhatThePolicyRefuses(t *testing.T) {
	python := testenv.Interpreter(t)
	blob, err := seccompProgram()
	require.NoError(t, err)
	dir, err := writeHarness(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	arch, err := nativeSeccompArch()
	require.NoError(t, err)
	x32 := 0
	if arch.x32 {
		x32 = x32SyscallBit
	}
	numbers, err := json.Marshal(map[string]int{
		"clone": int(arch.clone), "clone3": int(arch.clone3), "ptrace": unix.SYS_PTRACE,
		"getpid": unix.SYS_GETPID, "x32": x32, "sigchld": int(unix.SIGCHLD),
		"newns": unix.CLONE_NEWNS, "newnet": unix.CLONE_NEWNET,
	})
	require.NoError(t, err)

	want := map[string]string{
		"short_program": "EINVAL", "empty_program": "EINVAL", "bad_program": "EINVAL",
		"seccomp_mode": "2", "no_new_privs": "1",
		"getpid": "ok", "fork": "ok", "clone": "ok", "thread": "ok", "numpy": "ok",
		// Without the filter: ok, ok (as root), EINVAL, ESRCH, ENOENT, ok (as root), ok.
		"unshare": "EPERM", "unshare_newns": "EPERM", "clone3": "ENOSYS", "ptrace": "EPERM", "mount": "EPERM",
		"clone_newnet":           "EPERM",
		"earlier_thread_unshare": "EPERM",
	}
	if arch.x32 {
		want["x32_getpid"] = "EPERM" // without the filter: ENOSYS, or the pid
	}

	users := []struct {
		name string
		cred *syscall.Credential
	}{{name: "as the test's user"}}
	if os.Geteuid() == 0 {
		users = append(users, struct {
			name string
			cred *syscall.Credential
		}{"unprivileged", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}})
	}
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, "-I", "-B", "-c", filterProbe,
				filepath.Join(dir, pyharness.FileName), string(numbers))
			cmd.Stdin = bytes.NewReader(blob)
			cmd.WaitDelay = 5 * time.Second // a child left holding stdout must not hang the test
			cmd.Env = []string{"PATH=/usr/bin:/bin", "OPENBLAS_NUM_THREADS=2"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			var got map[string]string
			require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &got), "stdout: %s", stdout.String())
			assert.Equal(t, want, got)
		})
	}
}
