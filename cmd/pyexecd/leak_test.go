package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
)

// The leak suite: each plant below tries to leave state for the next
// script, and the check that follows must find none of it. In fork
// isolation every script runs in a new child of the one zygote, with
// namespaces of its own and nothing swept between scripts, and the check
// runs in another child of the plant's zygote (the test confirms it from
// the host's /proc); in strict isolation in another jail.

// whoAmI says which process the script runs in, in terms the host can
// check: its start time (clock ticks since boot) and its pid namespace.
const whoAmI = `
def who_am_i():
    import os
    return {"start": open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19],
            "pidns": os.readlink("/proc/self/ns/pid")}
`

const plant = whoAmI + `
import os, sys, signal, resource, builtins, json, atexit, threading, time, socket, random, ctypes
import numpy as np
def daemon():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            s = socket.socket(socket.AF_UNIX)
            s.bind("\0pyexec-leak")
            s.listen(1)
            time.sleep(600)
        os._exit(0)
    os.wait()
def main():
    os.makedirs("/tmp/leak/deep", exist_ok=True)
    open("/tmp/leak/deep/file", "w").write("x")
    open("/tmp/.hidden", "w").write("x")
    # matplotlib's font list, which the harness puts in /tmp for each script
    # (a copy, or a link to the shipped list): replaced by a planted one.
    for name in os.listdir("/tmp"):
        if name.startswith("fontlist"):
            os.unlink(os.path.join("/tmp", name))
            open(os.path.join("/tmp", name), "w").write("planted")
    os.symlink("/tmp/leak", "/tmp/link")
    os.chmod("/tmp/leak/deep", 0)
    os.chmod("/tmp/leak", 0)
    for root, dirs, files in os.walk("/tmp"):
        if root != "/tmp" and "leak" not in root:
            try:
                open(os.path.join(root, "planted"), "w").write("x")
            except OSError:
                pass
    os.environ["PYEXEC_LEAK"] = "1"
    os.chdir("/tmp")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
    import string
    string.ascii_letters = "pwned"
    builtins.pyexec_leak = True
    sys.modules["pyexec_leak"] = sys
    sys.path.append("/tmp/evil")
    atexit.register(lambda: open("/tmp/atexit", "w").write("x"))
    os.umask(0o777)
    os.nice(5)
    threading.Thread(target=lambda: [time.sleep(0.01) or open("/tmp/thread", "a").write("x") for _ in range(10000)], daemon=True).start()
    daemon()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget(0x5059, 4096, 0o1666)
    libc.semget(0x5059, 1, 0o1666)
    libc.msgget(0x5059, 0o1666)
    random.seed(42)
    np.random.seed(42)
    return {"who": who_am_i(), "random": random.random(), "np": float(np.random.random())}
`

const check = whoAmI + `
import os, sys, signal, resource, builtins, json, socket, random
import numpy as np
def main():
    leaks = []
    # What the jail mounted under /tmp (a checkout there holds the
    # interpreter's prefix) and the directories leading to it belong to
    # the jail, and so do this script's own working directory and its
    # empty output/; anything else is left over.
    mounts = {l.split()[4] for l in open("/proc/self/mountinfo") if l.split()[4].startswith("/tmp/")}
    keep = {"/tmp/work", "/tmp/work/output"}
    for m in mounts:
        d = os.path.dirname(m)
        while d != "/tmp":
            keep.add(d)
            d = os.path.dirname(d)
    # The one file the harness writes there itself, before each script:
    # matplotlib's font list, as shipped.
    shipped = {}
    for entry in sys.path:
        d = os.path.join(entry, "pyexec_fontcache")
        if os.path.isdir(d):
            shipped = {"/tmp/" + n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)}
    for path, data in shipped.items():
        if not os.path.exists(path) or open(path, "rb").read() != data:
            leaks.append("font list " + path + " is not as shipped")
    for root, dirs, files in os.walk("/tmp"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in mounts]
        leaks += ["/tmp holds " + os.path.join(root, f) for f in files if os.path.join(root, f) not in shipped]
        leaks += ["/tmp holds " + os.path.join(root, d) for d in dirs if os.path.join(root, d) not in keep]
    if "PYEXEC_LEAK" in os.environ:
        leaks.append("environment")
    if os.getcwd() != "/tmp/work":
        leaks.append("cwd " + os.getcwd())
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        leaks.append("SIGTERM disposition")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 32:
        leaks.append("rlimit")
    import string
    if string.ascii_letters == "pwned":
        leaks.append("patched module")
    if hasattr(builtins, "pyexec_leak") or "pyexec_leak" in sys.modules or "/tmp/evil" in sys.path:
        leaks.append("interpreter state")
    old = os.umask(0o022)
    if old != 0o022:
        leaks.append("umask %o" % old)
    if os.nice(0) != 0:
        leaks.append("nice")
    others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
    if others:
        leaks.append("processes %s" % others)
    try:
        socket.socket(socket.AF_UNIX).connect("\0pyexec-leak")
        leaks.append("abstract socket")
    except OSError:
        pass
    for kind in ("shm", "sem", "msg"):
        if len(open("/proc/sysvipc/" + kind).read().splitlines()) > 1:
            leaks.append("sysv " + kind)
    return {"who": who_am_i(), "leaks": leaks, "random": random.random(), "np": float(np.random.random())}
`

func TestLeaks_NoStateLeaksBetweenRuns(t *testing.T) { inEveryMode(t, testNoStateLeaksBetweenRuns) }

func testNoStateLeaksBetweenRuns(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, func(c *Config) { c.PoolSize = 1; c.Validation = jail.ValidationMinimal })
	fork := iso == jail.IsolationFork
	type answer struct {
		Who    whoAmIAnswer `json:"who"`
		Leaks  []string     `json:"leaks"`
		Random float64      `json:"random"`
		NP     float64      `json:"np"`
	}
	var previous *answer
	var plantedIn hostChild
	for round := 0; round < 3; round++ {
		// The child forked ahead of the plant, not the one the previous
		// check ran in.
		var waiting []hostChild
		if fork {
			waiting = waitingChildren(t, plantedIn.PID)
		}
		r := s.run(plant, 10)
		require.Nil(t, r.Body.Error, "plant: %+v", r.Body.Error)
		var planted answer
		require.NoError(t, json.Unmarshal(r.Body.Result, &planted))
		if fork {
			plantedIn = ranIn(t, waiting, planted.Who)
			waiting = waitingChildren(t, plantedIn.PID)
		}
		r = s.run(check, 10)
		require.Nil(t, r.Body.Error, "check: %+v", r.Body.Error)
		var got answer
		require.NoError(t, json.Unmarshal(r.Body.Result, &got))
		if fork {
			checkedIn := ranIn(t, waiting, got.Who)
			require.NotEqual(t, plantedIn.PID, checkedIn.PID, "the check must run in another child, or it proves nothing")
			require.Equal(t, plantedIn.Zygote, checkedIn.Zygote, "the check must run in a child of the plant's zygote, or it proves nothing")
			plantedIn = checkedIn
		}

		assert.Empty(t, got.Leaks, "round %d", round)
		assert.NotEqual(t, planted.Random, got.Random, "a seeded random state leaked")
		assert.NotEqual(t, planted.NP, got.NP, "a seeded numpy random state leaked")
		if previous != nil {
			assert.NotEqual(t, previous.Random, got.Random, "every child must not replay one random sequence")
			assert.NotEqual(t, previous.NP, got.NP, "every child must not replay numpy's one random sequence")
		}
		previous = &got
	}
}

// whoAmIAnswer is what whoAmI returns.
type whoAmIAnswer struct {
	Start string `json:"start"`
	PIDNS string `json:"pidns"`
}

// hostChild is a child of a zygote of this process's service, as the host
// sees it.
type hostChild struct {
	PID, Zygote int
	Start       string
	PIDNS       string
}

// zygoteChildren lists the live children of the zygotes this process
// started: a zygote is the init of a jail (pid 1 one namespace below the
// host's) whose parent, nsjail, is a child of this process, and its
// children are pid 1 of a namespace below the jail's.
func zygoteChildren(t *testing.T) []hostChild {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	type proc struct {
		ppid  int
		nspid []string
		start string
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !testenv.Alive(pid) {
			continue
		}
		status, err1 := os.ReadFile("/proc/" + e.Name() + "/status")
		stat, err2 := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err1 != nil || err2 != nil {
			continue // gone meanwhile
		}
		var p proc
		for _, line := range strings.Split(string(status), "\n") {
			name, value, _ := strings.Cut(line, ":")
			switch name {
			case "PPid":
				p.ppid, _ = strconv.Atoi(strings.TrimSpace(value))
			case "NSpid":
				p.nspid = strings.Fields(value)
			}
		}
		p.start = strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[19]
		procs[pid] = p
	}
	isZygote := func(pid int) bool {
		z, ok := procs[pid]
		return ok && len(z.nspid) == 2 && z.nspid[1] == "1" && procs[z.ppid].ppid == os.Getpid()
	}
	var children []hostChild
	for pid, p := range procs {
		if len(p.nspid) != 3 || p.nspid[2] != "1" || !isZygote(p.ppid) {
			continue
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil {
			continue
		}
		children = append(children, hostChild{PID: pid, Zygote: p.ppid, Start: p.start, PIDNS: ns})
	}
	return children
}

// waitingChildren waits until a zygote child other than not is alive and
// lists the live ones.
func waitingChildren(t *testing.T, not int) []hostChild {
	t.Helper()
	var got []hostChild
	require.Eventually(t, func() bool {
		got = got[:0]
		for _, c := range zygoteChildren(t) {
			if c.PID != not {
				got = append(got, c)
			}
		}
		return len(got) > 0
	}, 30*time.Second, 20*time.Millisecond, "no child forked ahead")
	return got
}

// ranIn finds the child among those alive before the request whose start
// time and pid namespace the script reported. A namespace's number is
// used again once it is freed, so it only names one of the namespaces
// alive when the list was made; the start time ties it to the process.
func ranIn(t *testing.T, before []hostChild, who whoAmIAnswer) hostChild {
	t.Helper()
	require.NotEmpty(t, who.PIDNS)
	for _, c := range before {
		if c.Start == who.Start && c.PIDNS == who.PIDNS {
			return c
		}
	}
	require.Failf(t, "the script ran in none of the zygote's children", "it reported %+v; the children: %+v", who, before)
	return hostChild{}
}
