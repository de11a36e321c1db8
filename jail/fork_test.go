package jail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec"
)

// Every child is made by the one zygote, runs one script and sees nothing
// of the scripts before it, without anything being swept between them.
func TestFork_ChildrenShareAZygoteButNothingElse(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	var zygote int
	for i := 0; i < 3; i++ {
		c := fork(t, s)
		_, ppid, err := nsPIDs(c.pid)
		require.NoError(t, err)
		if i == 0 {
			zygote = ppid
		}
		assert.Equal(t, zygote, ppid, "child %d comes from the same zygote", i)
		resp := run(t, c, "import os\ndef main():\n    print('pid', os.getpid())\n    open('/tmp/mark', 'a').write('x')\n    return len(open('/tmp/mark').read())\n", 5*time.Second)
		require.Nil(t, resp.Error, "%+v", resp.Error)
		assert.Equal(t, "1", string(resp.Result), "child %d saw an earlier script's /tmp", i)
		assert.Equal(t, "pid 1\n", resp.Stdout, "each script is pid 1 of its own namespace")
		assert.Panics(t, func() {
			_, _ = c.Run(context.Background(), pyexec.Request{Script: "def main():\n    pass\n", Timeout: time.Second})
		},
			"a used child must never be given a second script")
	}
}

// The service reads a child's output itself: kept on a timeout, and a
// script that floods it is stopped at the cap.
func TestFork_OutputIsTheServicesOwnReading(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, MaxOutputBytes: 64 << 10})
	resp := run(t, fork(t, s), "import time, sys\ndef main():\n    print('before')\n    print('err', file=sys.stderr)\n    time.sleep(60)\n", 2*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeTimeout, resp.Error.Code)
	assert.Equal(t, "before\n", resp.Stdout)
	assert.Equal(t, "err\n", resp.Stderr)

	t0 := time.Now()
	resp = run(t, fork(t, s), "def main():\n    while True:\n        print('y' * 99)\n", 20*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeOutputLimit, resp.Error.Code, resp.Error.Message)
	assert.Len(t, resp.Stdout, 64<<10)
	assert.True(t, resp.StdoutTruncated)
	assert.Less(t, time.Since(t0), 10*time.Second, "stopped at the cap, not at the timeout")

	// Past the cap and answered at once, before the pipes are watched
	// (its pipe made large enough to hold it all): stopped all the same.
	resp = run(t, fork(t, s), "import fcntl, os\ndef main():\n    fcntl.fcntl(1, 1031, 1 << 20)\n    os.write(1, b'z' * (100 << 10))\n    return 1\n", 5*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeOutputLimit, resp.Error.Code, resp.Error.Message)
	assert.Len(t, resp.Stdout, 64<<10)
	assert.True(t, resp.StdoutTruncated)

	resp = run(t, fork(t, s), "import os\ndef main():\n    os.write(1, b'raw ')\n    print('text')\n    return 1\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, "raw text\n", resp.Stdout)
	assert.False(t, resp.StdoutTruncated)
}

// A child that dies without answering is explained by how it ended, as
// its zygote saw it.
func TestFork_DeathsAreClassified(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	for _, tc := range []struct {
		script string
		code   pyexec.Code
		msg    string
	}{
		{"import os\ndef main():\n    print('bye')\n    os._exit(3)\n", pyexec.CodeSandbox, "exit status 3"},
		{"def main():\n    return len(bytearray(8 * 1024**3))\n", pyexec.CodeMemoryLimit, ""},
		{"def main():\n    x = []\n    while True:\n        x.append(b'y' * (1 << 20))\n", pyexec.CodeMemoryLimit, ""},
	} {
		resp := run(t, fork(t, s), tc.script, 20*time.Second)
		require.NotNil(t, resp.Error, tc.script)
		assert.Equal(t, tc.code, resp.Error.Code, "%s: %s", tc.script, resp.Error.Message)
		assert.Contains(t, resp.Error.Message, tc.msg)
	}
}

// Killing the zygote kills its children; the next Fork starts another.
func TestFork_ZygoteIsStartedAgain(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	c := fork(t, s)
	_, zygote, err := nsPIDs(c.pid)
	require.NoError(t, err)
	s.zygote.mu.Lock()
	s.zygote.proc.kill()
	s.zygote.mu.Unlock()
	require.Eventually(t, func() bool { return !c.Alive() }, 5*time.Second, 10*time.Millisecond)
	_, err = c.Run(context.Background(), pyexec.Request{ID: "t", Script: "def main():\n    return 1\n", Timeout: time.Second})
	require.ErrorIs(t, err, pyexec.ErrNotRun)

	c = fork(t, s)
	_, again, err := nsPIDs(c.pid)
	require.NoError(t, err)
	assert.NotEqual(t, zygote, again)
	resp := run(t, c, "def main():\n    return 2\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, "2", string(resp.Result))
}

// A child runs with no capability and no way to gain one.
func TestFork_ChildHoldsNoCapability(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	resp := run(t, fork(t, s), `def main():
    caps = {}
    for line in open("/proc/self/status"):
        name, _, value = line.partition(":")
        if name.startswith("Cap") or name == "NoNewPrivs":
            caps[name] = value.strip()
    return caps
`, 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	for _, name := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		assert.Contains(t, string(resp.Result), `"`+name+`": "0000000000000000"`)
	}
	assert.Contains(t, string(resp.Result), `"NoNewPrivs": "1"`)
}

// runAsync runs script on c in a goroutine; the answer comes on the
// channel returned.
func runAsync(c *Child, script string, timeout time.Duration) <-chan *pyexec.Response {
	done := make(chan *pyexec.Response, 1)
	go func() {
		resp, err := c.Run(context.Background(), pyexec.Request{ID: "t", Script: script, Timeout: timeout})
		if err != nil {
			resp = &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "run: %v", err)}
		}
		done <- resp
	}()
	return done
}

// catches reports whether pid has a handler for sig, as the host's /proc
// says.
func catches(pid int, sig unix.Signal) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if value, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// waiter holds @MB@ MB of its own and waits, blocked, for SIGUSR2 (which
// only the test sends), then returns what it holds and the other signals
// that reached it.
const waiter = `import signal
def main():
    hold = bytearray(b"\x01") * (@MB@ << 20)
    got = []
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(s, lambda n, f: got.append(n))
    signal.signal(signal.SIGUSR2, lambda n, f: None)
    signal.sigwait({signal.SIGUSR2})
    return {"held": len(hold), "signals": sorted(got)}
`

// startWaiter runs waiter on c and returns once it is waiting: its
// handler for SIGUSR2, installed last, shows in the host's /proc.
func startWaiter(t *testing.T, c *Child, mb int) <-chan *pyexec.Response {
	t.Helper()
	done := runAsync(c, strings.ReplaceAll(waiter, "@MB@", strconv.Itoa(mb)), time.Minute)
	require.Eventually(t, func() bool { return catches(c.pid, unix.SIGUSR2) }, 30*time.Second, 10*time.Millisecond,
		"the waiting script never got ready")
	return done
}

// release lets a waiter return and checks that it held its memory and
// that no signal but the test's reached it.
func release(t *testing.T, c *Child, done <-chan *pyexec.Response, mb int) {
	t.Helper()
	require.True(t, c.Alive(), "the waiting child died")
	require.NoError(t, c.pidfd.signal(unix.SIGUSR2))
	resp := <-done
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.JSONEq(t, fmt.Sprintf(`{"held": %d, "signals": []}`, mb<<20), string(resp.Result))
}

// A script's namespaces are its own: what it leaves behind in /tmp,
// /dev/shm, System V IPC, the network and the process table, while it is
// still alive, is invisible to a script in another child of the same
// zygote. Nothing removes any of it (there is no sweeping code): the first
// child is alive, holding all of it, while the second looks.
func TestFork_NamespacesAreTheChildsOwn(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	// The host holds the port too: binding it in a child shows the
	// child's network is not the host's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	first, second := fork(t, s), fork(t, s)
	resp := run(t, first, strings.ReplaceAll(`import ctypes, errno, os, socket, time
def main():
    libc = ctypes.CDLL(None, use_errno=True)
    open("/tmp/left-behind", "w").write("x")
    open("/dev/shm/left-behind", "w").write("x")
    ids = [libc.shmget(0x5059, 4096, 0o1666), libc.semget(0x5059, 1, 0o1666), libc.msgget(0x5059, 0o1666)]
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", @PORT@))
    tcp.listen(1)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("\0pyexec-left-behind")
    unix.listen(1)
    hostname = "changed"
    if libc.sethostname(b"pyexec-evil", 11) != 0:
        hostname = errno.errorcode[ctypes.get_errno()]
    if os.fork() == 0:
        # Holds the sockets while it lives.
        os.setsid()
        time.sleep(600)
        os._exit(0)
    return {"ids": [i >= 0 for i in ids], "hostname": hostname,
            "ipc": [len(open("/proc/sysvipc/" + k).read().splitlines()) - 1 for k in ("shm", "sem", "msg")],
            "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "files": [os.path.exists(p) for p in ("/tmp/left-behind", "/dev/shm/left-behind")]}
`, "@PORT@", port), 10*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.JSONEq(t, `{"ids": [true, true, true], "hostname": "EPERM", "ipc": [1, 1, 1], "procs": [1, 2], "files": [true, true]}`,
		string(resp.Result), "the first script planted everything, in namespaces of its own")
	require.True(t, first.Alive())
	if s.cg.mode != CgroupNone {
		// Each cgroup v1 controller lists them again.
		alive := map[int]bool{}
		for _, pid := range first.cg.pids() {
			alive[pid] = true
		}
		require.Len(t, alive, 2, "the first child and the process it left are alive")
		require.True(t, alive[first.pid])
	}

	resp = run(t, second, strings.ReplaceAll(`import os, socket
def main():
    seen = [p for p in ("/tmp/left-behind", "/dev/shm/left-behind") if os.path.exists(p)]
    seen += ["/dev/shm holds " + n for n in os.listdir("/dev/shm")]
    seen += ["sysv " + k for k in ("shm", "sem", "msg") if len(open("/proc/sysvipc/" + k).read().splitlines()) > 1]
    procs = sorted(p for p in os.listdir("/proc") if p.isdigit())
    if procs != ["1"]:
        seen.append("processes %s" % procs)
    tcp = socket.socket()
    try:
        tcp.bind(("127.0.0.1", @PORT@))
        tcp.listen(1)
    except OSError as e:
        seen.append("port taken: %s" % e)
    try:
        socket.socket(socket.AF_UNIX).connect("\0pyexec-left-behind")
        seen.append("abstract socket")
    except ConnectionRefusedError:
        pass
    if socket.gethostname() == "pyexec-evil":
        seen.append("hostname")
    return seen
`, "@PORT@", port), 10*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, "[]", string(resp.Result), "the second script saw what the first left")
	assert.True(t, first.Alive(), "the first child held its state while the second looked")
}

// A script's OOM is its own: with two children running at once, the one
// that allocates past MemoryMB gets memory_limit while its neighbour,
// holding a good part of the limit itself, answers normally. Children
// sharing one cgroup would have the kernel choose a victim among both.
func TestFork_OOMIsAttributedWhileANeighbourRuns(t *testing.T) {
	const memoryMB, held = 256, 120
	s := newSpawner(t, Config{Isolation: IsolationFork, MemoryMB: memoryMB})
	neighbour, hog := fork(t, s), fork(t, s)
	waiting := startWaiter(t, neighbour, held)
	resp := run(t, hog, "def main():\n    x = []\n    while True:\n        x.append(b'y' * (1 << 20))\n", 30*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeMemoryLimit, resp.Error.Code, resp.Error.Message)
	if s.cg.mode != CgroupNone {
		assert.False(t, neighbour.cg.oomKilled(), "the neighbour's cgroup saw an OOM kill")
	}
	release(t, neighbour, waiting, held)
}

// A child cannot learn its host pid, nor make the service take another
// process for it: it sees itself as pid 1 with no parent, and the kernel
// refuses credentials naming any other pid, the real host pid (which the
// test hands it) among them, on every socket it holds. After its script,
// the service's pid is still the kernel's: the same process, pid 1 of a
// namespace below the zygote's, its parent the zygote, behind the pidfd.
func TestFork_ChildCannotLearnOrChangeItsHostPID(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	c := fork(t, s)
	pid := c.pid
	before, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	resp := run(t, c, strings.ReplaceAll(`import errno, os, signal, socket, stat, struct
HOST_PID = @PID@
def main():
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    view = {"pid": os.getpid(), "ppid": os.getppid(), "nspid": status["NSpid"].split(),
            "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            "start": open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]}
    helper = os.fork()
    if helper == 0:
        signal.pause()
        os._exit(0)
    refused, sockets = {}, []
    try:
        for fd in range(0, 65):
            try:
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    continue
            except OSError:
                continue
            sockets.append(fd)
            s = socket.socket(fileno=fd)
            try:
                for other in (HOST_PID, helper, 4242):
                    creds = struct.pack("3i", other, os.getuid(), os.getgid())
                    try:
                        s.sendmsg([b'{"hello": true}\n'], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
                        refused["fd %d pid %d" % (fd, other)] = "sent"
                    except OSError as e:
                        refused["fd %d pid %d" % (fd, other)] = errno.errorcode.get(e.errno, str(e.errno))
            finally:
                s.detach()
    finally:
        os.kill(helper, 9)
        os.waitpid(helper, 0)
    view["sockets"] = sockets
    view["refused"] = refused
    return view
`, "@PID@", strconv.Itoa(pid)), 10*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	var view struct {
		PID     int               `json:"pid"`
		PPID    int               `json:"ppid"`
		NSpid   []string          `json:"nspid"`
		Procs   []string          `json:"procs"`
		Start   string            `json:"start"`
		Sockets []int             `json:"sockets"`
		Refused map[string]string `json:"refused"`
	}
	require.NoError(t, json.Unmarshal(resp.Result, &view), "%s", resp.Result)
	assert.Equal(t, 1, view.PID)
	assert.Equal(t, 0, view.PPID)
	assert.Equal(t, []string{"1"}, view.NSpid, "no pid of an outer namespace in sight")
	assert.Equal(t, []string{"1"}, view.Procs)
	require.NotEmpty(t, view.Sockets, "the child's channel is a socket")
	assert.Len(t, view.Refused, 3*len(view.Sockets))
	for what, got := range view.Refused {
		assert.Equal(t, "EPERM", got, "credentials naming another pid (%s)", what)
	}

	require.Equal(t, pid, c.pid)
	require.True(t, c.Alive())
	after, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	startOf := func(stat []byte) string {
		return strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[19]
	}
	assert.Equal(t, startOf(before), startOf(after), "the same process behind the pid")
	assert.Equal(t, startOf(after), view.Start, "the process behind the pid ran the script")
	ns, ppid, err := nsPIDs(pid)
	require.NoError(t, err)
	assert.Equal(t, s.zygote.proc.hostPID, ppid, "the child's parent is the zygote")
	require.Len(t, ns, 3)
	assert.Equal(t, 1, ns[2], "pid 1 of its own namespace")
	fdinfo, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", c.pidfd.fd()))
	require.NoError(t, err)
	assert.Contains(t, string(fdinfo), fmt.Sprintf("Pid:\t%d\n", pid), "the pidfd is on that process")
}

// Signals a script sends to its process group, to -1 or to its group by
// name reach nothing outside its own pid namespace: not a neighbour
// running a script (which would receive a SIGKILL from a sibling
// namespace as its init, were it in the same process group), not a child
// waiting for its request, not the zygote.
func TestFork_SignalsDoNotReachANeighbour(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	neighbour, attacker, next := fork(t, s), fork(t, s), fork(t, s)
	waiting := startWaiter(t, neighbour, 1)
	zygote := s.zygote.proc
	resp := run(t, attacker, `import errno, os, signal
def main():
    sent = {}
    def send(name, call):
        try:
            call()
            sent[name] = "sent"
        except OSError as e:
            sent[name] = errno.errorcode.get(e.errno, str(e.errno))
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGKILL):
        send("kill(0, %d)" % sig, lambda: os.kill(0, sig))
        send("kill(-1, %d)" % sig, lambda: os.kill(-1, sig))
        send("killpg(%d)" % sig, lambda: os.killpg(os.getpgrp(), sig))
    # From a process that is not its namespace's init, too.
    pid = os.fork()
    if pid == 0:
        try:
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGKILL):
                for target in (-1, 0):
                    try:
                        os.kill(target, sig)
                    except OSError:
                        pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return sent
`, 10*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Contains(t, string(resp.Result), `"kill(0, 9)": "sent"`, "the attacks were made: %s", resp.Result)
	assert.True(t, zygote.alive(), "the zygote survived")
	assert.True(t, next.Alive(), "the child waiting for its request survived")
	release(t, neighbour, waiting, 1)
	resp = run(t, next, "def main():\n    return 7\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, "7", string(resp.Result))
}

// What multiprocessing needs works in both modes: /dev/shm, a Pool mapping
// a function the script defines, and shared memory.
func TestMultiprocessingWorks(t *testing.T) {
	script := `import multiprocessing, os
from multiprocessing import shared_memory
def square(x):
    return x * x
def main():
    open("/dev/shm/mine", "w").write("shm")
    with multiprocessing.Pool(2) as pool:
        squares = pool.map(square, range(5))
    mem = shared_memory.SharedMemory(create=True, size=16)
    try:
        mem.buf[:3] = b"abc"
        other = shared_memory.SharedMemory(name=mem.name)
        seen = bytes(other.buf[:3]).decode()
        other.close()
    finally:
        mem.close()
        mem.unlink()
    return {"squares": squares, "shared": seen, "dev_shm": open("/dev/shm/mine").read()}
`
	for _, iso := range []Isolation{IsolationStrict, IsolationFork} {
		s := newSpawner(t, Config{Isolation: iso})
		var w runner
		if iso == IsolationFork {
			w = fork(t, s)
		} else {
			w = spawn(t, s)
		}
		resp := run(t, w, script, 30*time.Second)
		require.Nil(t, resp.Error, "%s: %+v", iso, resp.Error)
		assert.JSONEq(t, `{"squares": [0, 1, 4, 9, 16], "shared": "abc", "dev_shm": "shm"}`, string(resp.Result), iso.String())
	}
}

// A waiting child warms up only in idle time: SCHED_IDLE, and its cgroup at
// the lowest CPU weight (a cgroup's weight, not its process's class, is
// what it competes with other cgroups by). The script runs in the normal
// class at the default weight.
func TestFork_WaitingChildIsIdleAndItsScriptIsNot(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	c := fork(t, s)
	attr, err := unix.SchedGetAttr(c.pid, 0)
	require.NoError(t, err)
	assert.EqualValues(t, unix.SCHED_IDLE, attr.Policy, "the waiting child")
	weight := func() string {
		if c.cg.weight.file == "" {
			return ""
		}
		data, err := os.ReadFile(c.cg.weight.file)
		require.NoError(t, err)
		return strings.TrimSpace(string(data))
	}
	if s.cg.cpuLimited {
		assert.Equal(t, c.cg.weight.idle, weight(), "the waiting child's cgroup")
	}
	resp := run(t, c, "import os\ndef main():\n    return os.sched_getscheduler(0)\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, strconv.Itoa(unix.SCHED_NORMAL), string(resp.Result), "the script's class")
	if s.cg.cpuLimited {
		assert.Equal(t, c.cg.weight.normal, weight(), "the script's cgroup")
	}
}

// A child holds no descriptor of the zygote's or of another child's: only
// its standard streams (its two pipes), its own channel and /dev/null.
func TestFork_ChildHoldsOnlyItsOwnDescriptors(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	fork(t, s) // a second child exists while the first runs
	resp := run(t, fork(t, s), `import os
def main():
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    fds = {}
    for name in os.listdir(listing):
        fd = int(name)
        if fd != listing:
            try:
                fds[fd] = os.readlink("/proc/self/fd/%d" % fd).split(":")[0]
            except OSError:
                pass
    os.close(listing)
    return fds
`, 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	var fds map[string]string
	require.NoError(t, json.Unmarshal(resp.Result, &fds))
	kinds := map[string]int{}
	for fd, kind := range fds {
		if fd != "1" && fd != "2" {
			kinds[kind]++
		}
	}
	assert.Equal(t, "pipe", fds["1"])
	assert.Equal(t, "pipe", fds["2"])
	assert.Equal(t, 1, kinds["socket"], "one socket, its own channel: %v", fds)
	delete(kinds, "socket")
	delete(kinds, "/dev/null")
	assert.Empty(t, kinds, "nothing but its channel and /dev/null besides its streams: %v", fds)
}

// A child's cgroup is used again by a later child once it is empty: the
// later script is not blamed for the earlier one's OOM kill, its limit
// still holds, and its own OOM kill is still seen.
func TestFork_AReusedCgroupStartsClean(t *testing.T) {
	const memoryMB = 192
	s := newSpawner(t, Config{Isolation: IsolationFork, MemoryMB: memoryMB})
	hog := "def main():\n    x = []\n    while True:\n        x.append(b'y' * (1 << 20))\n"
	first := fork(t, s)
	resp := run(t, first, hog, 30*time.Second)
	require.NotNil(t, resp.Error)
	require.Equal(t, pyexec.CodeMemoryLimit, resp.Error.Code, resp.Error.Message)
	if s.cg.mode == CgroupNone {
		return // no cgroup to reuse: the rest is about cgroups
	}
	dirs := first.cg.dirs
	first.Kill()

	second := fork(t, s)
	require.Equal(t, dirs, second.cg.dirs, "the emptied cgroup is taken again")
	// It holds 100 MB, well within the limit, and dies: of its own exit,
	// not of the earlier script's OOM kill.
	resp = run(t, second, "import os\ndef main():\n    x = b'y' * (100 << 20)\n    os._exit(3)\n", 30*time.Second)
	require.NotNil(t, resp.Error)
	assert.NotEqual(t, pyexec.CodeMemoryLimit, resp.Error.Code, resp.Error.Message)
	second.Kill()

	third := fork(t, s)
	require.Equal(t, dirs, third.cg.dirs)
	resp = run(t, third, hog, 30*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeMemoryLimit, resp.Error.Code, "the limit holds in a reused cgroup: %s", resp.Error.Message)
}

// The zygote's memory is a private mapping of sealed memory files: a fork
// copies no page table entry for it, a script that writes to an object made
// in the zygote changes its own copy only, and no script can open the files
// to change what the next child starts from.
func TestFork_ZygoteMemoryIsSealedAndEachChildsWritesAreItsOwn(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	first := fork(t, s)
	zygote := s.zygote.proc.hostPID
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", zygote))
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(maps), "/memfd:pyexec-zygote"), "the zygote's memory was moved to memory files")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", zygote))
	require.NoError(t, err)
	var anonKB int
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "RssAnon:") {
			anonKB, err = strconv.Atoi(strings.Fields(line)[1])
			require.NoError(t, err)
		}
	}
	// About 47 MiB of anonymous memory before the move (numpy and pandas
	// imported); what is left is what the zygote wrote since.
	assert.Less(t, anonKB, 24<<10, "anonymous memory left in the zygote: %d kB", anonKB)

	// The script overwrites the first letter of string.ascii_letters, an
	// object the zygote made, in place: the page is in a memory file
	// mapping, and the write copies it. The next script sees the original.
	const script = `import ctypes, errno, os, string, sys
WRITE = @WRITE@
def in_memfd(addr):
    for line in open("/proc/self/maps"):
        span, _, rest = line.partition(" ")
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= addr < hi:
            return "memfd:pyexec-zygote" in rest, span
    return False, ""
def main():
    s = string.ascii_letters
    addr = id(s) + sys.getsizeof(s) - len(s) - 1
    shared, span = in_memfd(addr)
    opened = None
    try:
        os.close(os.open("/proc/self/map_files/" + span, os.O_RDWR))
        opened = "opened"
    except OSError as exc:
        opened = errno.errorcode[exc.errno]
    before = ctypes.string_at(addr, 1).decode()
    if WRITE:
        ctypes.memmove(addr, b"Z", 1)
    return {"addr": addr, "shared": shared, "before": before, "after": ctypes.string_at(addr, 1).decode(), "open": opened}
`
	var got [2]struct {
		Addr   int64  `json:"addr"`
		Shared bool   `json:"shared"`
		Before string `json:"before"`
		After  string `json:"after"`
		Open   string `json:"open"`
	}
	for i, c := range []*Child{first, fork(t, s)} {
		write := map[bool]string{true: "True", false: "False"}[i == 0]
		resp := run(t, c, strings.ReplaceAll(script, "@WRITE@", write), 5*time.Second)
		require.Nil(t, resp.Error, "%+v", resp.Error)
		require.NoError(t, json.Unmarshal(resp.Result, &got[i]), string(resp.Result))
		assert.True(t, got[i].Shared, "script %d: the string lies in a memory file mapping", i)
		assert.NotEqual(t, "opened", got[i].Open, "script %d opened the zygote's memory file for writing", i)
	}
	assert.Equal(t, "a", got[0].Before)
	assert.Equal(t, "Z", got[0].After, "the first script changed its own copy")
	assert.Equal(t, got[0].Addr, got[1].Addr, "both scripts looked at the same address")
	assert.Equal(t, "a", got[1].Before, "the second script starts from the zygote's memory, not the first script's")
}

// The zygote's loop is C (pyharness/native/zygote_loop.c): between forks
// it writes to a few pages of its own stack and buffers, not to the
// interpreter's objects, so the pages a fork shares with a child are not
// copied back by the zygote's next write. An interpreter loop took 186
// page faults per fork here (with the memory files about 240).
func TestFork_ZygoteTouchesFewPagesBetweenForks(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	fork(t, s).Kill()
	zygote := s.zygote.proc.hostPID
	before := minorFaults(t, zygote)
	const forks = 20
	for range forks {
		fork(t, s).Kill()
	}
	per := float64(minorFaults(t, zygote)-before) / forks
	t.Logf("the zygote's page faults per fork: %.1f", per)
	assert.Less(t, per, 40.0, "the zygote copies pages between forks")
}

// minorFaults reads a process's minor page faults from /proc/pid/stat.
func minorFaults(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// The fields after the command's closing parenthesis: state is the
	// first, minflt the eighth.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	n, err := strconv.Atoi(fields[7])
	require.NoError(t, err)
	return n
}
