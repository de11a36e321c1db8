package main

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/jail"
)

// The leak suite: in fork isolation one jail serves many scripts, so each
// plant below tries to leave state for the next script, and the check that
// follows (in the same jail) must find none of it.

// jailID identifies the jail a script ran in: the start time of its pid 1.
const jailID = `
def jail_id():
    return open("/proc/1/stat").read().split(")")[1].split()[19]
`

const plant = jailID + `
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
    # matplotlib's font list, which the harness puts in /tmp for each script.
    for name in os.listdir("/tmp"):
        if name.startswith("fontlist"):
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
    return {"jail": jail_id(), "random": random.random(), "np": float(np.random.random())}
`

const check = jailID + `
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
    return {"jail": jail_id(), "leaks": leaks, "random": random.random(), "np": float(np.random.random())}
`

func TestFork_NoStateLeaksBetweenRuns(t *testing.T) {
	s := startService(t, jail.IsolationFork, func(c *Config) { c.PoolSize = 1; c.Validation = jail.ValidationMinimal })
	var first map[string]any
	for round := 0; round < 3; round++ {
		r := s.run(plant, 10)
		require.Nil(t, r.Body.Error, "plant: %+v", r.Body.Error)
		var planted map[string]any
		require.NoError(t, json.Unmarshal(r.Body.Result, &planted))

		r = s.run(check, 10)
		require.Nil(t, r.Body.Error, "check: %+v", r.Body.Error)
		var got struct {
			Jail   string   `json:"jail"`
			Leaks  []string `json:"leaks"`
			Random float64  `json:"random"`
			NP     float64  `json:"np"`
		}
		require.NoError(t, json.Unmarshal(r.Body.Result, &got))
		require.Equal(t, planted["jail"], got.Jail, "the check must run in the jail the plant ran in, or it proves nothing")
		assert.Empty(t, got.Leaks, "round %d", round)
		assert.NotEqual(t, planted["random"], got.Random, "a seeded random state leaked")
		if first != nil {
			assert.NotEqual(t, first["random"], got.Random, "every child must not replay one random sequence")
		}
		first = map[string]any{"random": got.Random}
	}
}

// eavesdrop answers its own request early (it finds the request's id in
// the harness's frames), forges the zygote's "jail restored" line right
// after, and leaves a process waiting on every descriptor for the next
// request, to answer it with what it read. Were the forged line believed,
// the service would send the next script into this jail while the script
// still runs.
const eavesdrop = `import os, sys, time, json
def request_id():
    f = sys._getframe()
    while f is not None:
        req = f.f_locals.get("req")
        if isinstance(req, dict) and "id" in req:
            return req["id"]
        f = f.f_back
def main():
    rid = request_id()
    if os.fork() == 0:
        deadline = time.time() + 5
        for fd in range(0, 64):
            try:
                os.set_blocking(fd, False)
            except OSError:
                pass
        while time.time() < deadline:
            for fd in range(0, 64):
                try:
                    data = os.read(fd, 1 << 20)
                except OSError:
                    continue
                if b'"script"' in data:
                    req = json.loads(data.splitlines()[0])
                    reply = json.dumps({"id": req["id"], "result": "stolen: " + req["script"], "stdout": "", "stderr": "", "error": None})
                    for out in range(3, 64):
                        try:
                            os.write(out, reply.encode() + b"\n")
                        except OSError:
                            pass
            time.sleep(0.002)
        os._exit(0)
    answer = json.dumps({"id": rid, "result": "planted", "stdout": "", "stderr": "", "error": None})
    forged = json.dumps({"ready": True, "protocol": 1, "pid": 1, "zygote": True, "done": "guess", "nonce": "forged"})
    for fd in range(3, 64):
        try:
            os.write(fd, (answer + "\n" + forged + "\n").encode())
        except OSError:
            pass
    time.sleep(3)
    return "late"
`

func TestFork_ForgedRestoredLineCannotStealTheNextScript(t *testing.T) {
	s := startService(t, jail.IsolationFork, func(c *Config) { c.PoolSize = 1; c.Validation = jail.ValidationMinimal })
	for round := 0; round < 3; round++ {
		r := s.run(eavesdrop, 10)
		require.Nil(t, r.Body.Error, "%+v", r.Body.Error)
		require.JSONEq(t, `"planted"`, string(r.Body.Result), "the early answer is the script's own to give")
		for i := 0; i < 3; i++ {
			r = s.run(fmt.Sprintf("def main():\n    return 'private-%d-%d'\n", round, i), 10)
			require.Nil(t, r.Body.Error, "round %d: %+v", round, r.Body.Error)
			assert.JSONEq(t, fmt.Sprintf(`"private-%d-%d"`, round, i), string(r.Body.Result), "round %d: the next script was answered by someone else", round)
		}
	}
}
