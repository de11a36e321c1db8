"""Tests of the harness on its own, without the jail: validation rules,
result encoding, and the protocol spoken by a real harness process."""

import errno
import json
import os
import socket
import struct
import subprocess
import tempfile
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness.py")
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402


# --------------------------------------------------------------------------
# validate()

OK = "def main():\n    return 1\n"


@pytest.mark.parametrize(
    "source, message",
    [
        ("def foo():\n    return {'x': 1}\n", "script must define main()"),
        ("def main(:\n", "syntax error at line 1"),
        ("def main(a):\n    return a\n", "main() must take no required arguments (it has: a)"),
        ("def main(*, k):\n    return k\n", "main() must take no required arguments (it has: k)"),
        ("async def main():\n    return 1\n", "main() must be a plain function"),
        ("def main():\n    return eval('1')\n", "use of eval() is not allowed (line 2)"),
        ("def main():\n    exec('x=1')\n", "use of exec() is not allowed (line 2)"),
        ("def main():\n    compile('1','f','eval')\n", "use of compile() is not allowed"),
        ("def main():\n    __import__('os')\n", "use of __import__() is not allowed"),
        ("import builtins\ndef main():\n    builtins.eval('1')\n", "use of eval() is not allowed"),
        ("import os\ndef main():\n    os.system('rm -rf /')\n", "use of os.system() is not allowed"),
        ("import os as o\ndef main():\n    o.popen('ls')\n", "use of os.popen() is not allowed"),
        ("import os\ndef main():\n    os.execv('/bin/sh', [])\n", "use of os.execv() is not allowed"),
        ("import os\ndef main():\n    os.spawnl(0, 'x')\n", "use of os.spawnl() is not allowed"),
        ("from os import system\ndef main():\n    system('x')\n", "use of os.system() is not allowed"),
        ("import subprocess\ndef main():\n    pass\n", "import of subprocess is not allowed (line 1)"),
        ("import ctypes.util\ndef main():\n    pass\n", "import of ctypes is not allowed"),
        ("from pty import spawn\ndef main():\n    pass\n", "import of pty is not allowed"),
        ("def main():\n    import subprocess\n", "import of subprocess is not allowed (line 2)"),
    ],
)
def test_validate_rejects_with_a_clear_message(source, message):
    with pytest.raises(harness.ValidationError) as info:
        harness.validate(source, "standard")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        OK,
        "def main(a=1, *args, k=2, **kw):\n    return a\n",
        "import os\ndef main():\n    return os.getcwd()\n",
        "import numpy as np\nimport pandas as pd\ndef main():\n    return 1\n",
        "def main():\n    x = {'eval': 1}\n    return x['eval']\n",
    ],
)
def test_validate_accepts(source):
    assert harness.validate(source, "standard") is not None


@pytest.mark.parametrize(
    "source, allowed",
    [
        ("import os\ndef main():\n    os.system('true')\n", True),
        ("import subprocess\ndef main():\n    pass\n", True),
        ("def main():\n    compile('1','f','eval')\n", True),
        ("def main():\n    eval('1')\n", False),
        ("def main():\n    exec('1')\n", False),
    ],
)
def test_minimal_policy_denies_only_eval_and_exec(source, allowed):
    if allowed:
        assert harness.validate(source, "minimal") is not None
    else:
        with pytest.raises(harness.ValidationError):
            harness.validate(source, "minimal")


def test_validate_size_limit_counts_bytes():
    source = OK + "#" + "é" * 100
    with pytest.raises(harness.ValidationError) as info:
        harness.validate(source, "standard", max_bytes=len(OK) + 150)
    assert "over the" in str(info.value)
    assert harness.validate(source, "standard", max_bytes=len(OK) + 201)


def test_validate_survives_pathological_nesting():
    source = "def main():\n    return " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    with pytest.raises(harness.ValidationError):
        harness.validate(source, "standard")
    deep = "def main():\n    return " + "-" * 100000 + "1\n"
    with pytest.raises(harness.ValidationError):
        harness.validate(deep, "standard")


# --------------------------------------------------------------------------
# encode_result()


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"a": [1, 2.5, None, True, "x"]}, {"a": [1, 2.5, None, True, "x"]}),
        (np.int64(7), 7),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.arange(3), [0, 1, 2]),
        ({"m": np.array([[1.5, 2.0], [3.0, 4.0]])}, {"m": [[1.5, 2.0], [3.0, 4.0]]}),
        (None, None),
    ],
)
def test_encode_result_plain_json(value, expected):
    assert json.loads(harness.encode_result(value)) == expected


@pytest.mark.parametrize(
    "value",
    [set([1, 2]), float("nan"), float("inf"), b"bytes", np.array([np.nan]), object(), {(1, 2): 3}],
)
def test_encode_result_rejects_non_json(value):
    with pytest.raises(harness.InvalidResult):
        harness.encode_result(value)


def test_encode_result_rejects_self_reference():
    value = []
    value.append(value)
    with pytest.raises(harness.InvalidResult):
        harness.encode_result(value)


# --------------------------------------------------------------------------
# A real harness process over its protocol


class Proc:
    def __init__(self):
        self.p = subprocess.Popen(
            [sys.executable, "-I", "-B", HARNESS],
            env=dict(os.environ, PYEXEC_WORKDIR=os.path.join(tempfile.mkdtemp(), "work")),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        ready = json.loads(self.p.stdout.readline())
        assert ready["ready"] is True
        assert ready["protocol"] == 1
        assert "numpy" in ready and "pandas" in ready

    def ask(self, script, timeout_ms=5000, **limits):
        limits.setdefault("max_output_bytes", 1 << 20)
        limits.setdefault("validation", "standard")
        req = {"id": "t1", "script": script, "timeout_ms": timeout_ms, "limits": limits}
        self.p.stdin.write((json.dumps(req) + "\n").encode())
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, self.p.stderr.read().decode()
        return json.loads(line)

    def close(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def proc():
    p = Proc()
    yield p
    p.close()


def test_spec_example(proc):
    r = proc.ask('def main():\n    print("hello from sandbox")\n    return {"message": "success"}')
    assert r["result"] == {"message": "success"}
    assert r["stdout"] == "hello from sandbox\n"
    assert r["error"] is None
    assert r["id"] == "t1"


def test_runtime_error_keeps_stdout_and_user_frames_only(proc):
    r = proc.ask("def helper():\n    raise ValueError('boom')\n\ndef main():\n    print('before')\n    helper()\n")
    assert r["result"] is None
    assert r["stdout"] == "before\n"
    assert r["error"]["type"] == "runtime_error"
    assert r["error"]["message"] == "ValueError: boom"
    tb = r["error"]["traceback"]
    assert 'File "<script>", line 6, in main' in tb
    assert "raise ValueError('boom')" in tb
    assert "harness.py" not in tb


def test_fd_level_capture_and_fake_protocol_lines(proc):
    script = (
        "import os, sys\n"
        "def main():\n"
        "    print('{\"result\": 666, \"error\": null}')\n"
        "    sys.stdout.flush()\n"
        "    os.write(1, b'raw\\n')\n"
        "    sys.stdout.buffer.write(b'buf\\xff\\n')\n"
        "    os.write(2, b'err\\n')\n"
        "    return 1\n"
    )
    r = proc.ask(script)
    assert r["result"] == 1
    assert r["stdout"] == '{"result": 666, "error": null}\nraw\nbuf\ufffd\n'
    assert r["stderr"] == "err\n"


def test_output_cap_truncates_and_flags(proc):
    r = proc.ask("def main():\n    print('x' * 5000)\n    return 2\n", max_output_bytes=1000)
    assert r["result"] == 2
    assert len(r["stdout"]) == 1000
    assert r["stdout_truncated"] is True


def test_result_over_cap_is_output_limit(proc):
    r = proc.ask("def main():\n    return 'y' * 5000\n", max_output_bytes=1000)
    assert r["error"]["type"] == "output_limit"
    assert r["result"] is None


def test_invalid_result_message(proc):
    r = proc.ask("def main():\n    return set([1, 2])\n")
    assert r["error"]["type"] == "invalid_result"
    assert r["error"]["message"].startswith("Returned value is not valid JSON")


def test_validation_failure_is_the_one_answer(proc):
    r = proc.ask("def foo():\n    return 1\n")
    assert r["error"] == {"type": "validation_error", "message": "script must define main()"}
    assert proc.p.wait(timeout=10) == 0


def test_system_exit_is_a_runtime_error(proc):
    r = proc.ask("import sys\ndef main():\n    sys.exit(3)\n")
    assert r["error"]["type"] == "runtime_error"
    assert r["error"]["message"] == "SystemExit: 3"


def test_memory_error_is_memory_limit(proc):
    r = proc.ask("def main():\n    raise MemoryError()\n")
    assert r["error"]["type"] == "memory_limit"


def test_script_functions_pickle_by_name(proc):
    # multiprocessing sends a function to its workers by name, looked up
    # in sys.modules["__main__"]: the script's own module while it runs.
    script = (
        "import pickle, sys\n"
        "def square(x):\n"
        "    return x * x\n"
        "def main():\n"
        "    again = pickle.loads(pickle.dumps(square))\n"
        "    return [again is square, again(3), sys.modules['__main__'].main is main]\n"
    )
    assert proc.ask(script)["result"] == [True, 9, True]


def test_script_module_is_main_only_while_it_runs():
    before = sys.modules["__main__"]
    source = "def main():\n    return __name__\n"
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        reply = harness.run_script(harness.validate(source), source, {}, devnull, None)
    finally:
        os.close(devnull)
    assert json.loads(reply["_result_text"]) == "__main__"
    assert sys.modules["__main__"] is before


def test_harness_exits_after_running_a_script(proc):
    proc.ask(OK)
    assert proc.p.wait(timeout=5) == 0


def test_zygote_refuses_to_run_outside_its_own_pid_namespace():
    # Its children die with it only when it is the init of the jail's pid
    # namespace; anywhere else it must refuse to start.
    env = dict(os.environ, PYEXEC_ROLE="zygote", PYEXEC_SECCOMP_FILTER=os.devnull)
    p = subprocess.run([sys.executable, "-B", HARNESS], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    assert p.returncode != 0
    assert b"must be pid 1" in p.stderr
    assert p.stdout == b""


def test_print_and_descriptor_writes_keep_their_order(proc):
    script = (
        "import os, sys\n"
        "def main():\n"
        "    print('one', flush=True)\n"
        "    os.write(1, b'two\\n')\n"
        "    print('three')\n"
        "    os.write(1, b'four\\n')\n"
        "    return 0\n"
    )
    r = proc.ask(script)
    # 'three' sits in the stream's buffer until it is flushed at the end,
    # as it would on a pipe; what was flushed before a raw write stays before.
    assert r["stdout"] == "one\ntwo\nfour\nthree\n"


def test_forked_child_output_is_captured(proc):
    script = (
        "import os, sys\n"
        "def main():\n"
        "    print('parent before')\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        print('from the child')\n"
        "        sys.stdout.flush()\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    return 1\n"
    )
    r = proc.ask(script, validation="minimal")
    assert r["result"] == 1, r
    assert sorted(r["stdout"].splitlines()) == ["from the child", "parent before"]


def test_descriptor_flood_is_truncated_without_blocking(proc):
    # Far more than a pipe holds: the writer must not block on a full pipe.
    script = "import os\ndef main():\n    for _ in range(64):\n        os.write(1, b'z' * 65536)\n    return 3\n"
    r = proc.ask(script, timeout_ms=5000, max_output_bytes=2000)
    assert r["result"] == 3
    assert r["stdout"] == "z" * 2000
    assert r["stdout_truncated"] is True


def test_print_flood_is_truncated(proc):
    r = proc.ask("def main():\n    for i in range(200000):\n        print(i)\n    return 4\n", max_output_bytes=100)
    assert r["result"] == 4
    assert r["stdout"].startswith("0\n1\n2\n")
    assert len(r["stdout"]) == 100
    assert r["stdout_truncated"] is True


# --------------------------------------------------------------------------
# Kernel.share_memory (the zygote's memory in sealed memory files)

SHARE_CHECK = r"""
import ctypes, errno, json, os, string, sys
sys.path.insert(0, sys.argv[1])
import numpy, pandas
import harness
moved = harness.Kernel().share_memory()
assert isinstance(moved, int), moved
spans = [line.split()[0] for line in open("/proc/self/maps") if "memfd:pyexec-zygote" in line]
s = string.ascii_letters
addr = id(s) + sys.getsizeof(s) - len(s) - 1
span = next(sp for sp in spans if int(sp.split("-")[0], 16) <= addr < int(sp.split("-")[1], 16))
# Even a process allowed to open the file cannot change it: it is sealed.
try:
    fd = os.open("/proc/self/map_files/" + span, os.O_RDWR)
    try:
        os.pwrite(fd, b"Z", addr - int(span.split("-")[0], 16))
        write = "written"
    except OSError as exc:
        write = errno.errorcode[exc.errno]
    os.close(fd)
except OSError as exc:
    write = "open: " + errno.errorcode[exc.errno]
pid = os.fork()
if pid == 0:
    ctypes.memmove(addr, b"Z", 1)
    os._exit(0 if ctypes.string_at(addr, 1) == b"Z" and string.ascii_letters[0] == "Z" else 1)
_, status = os.waitpid(pid, 0)
frame = pandas.DataFrame({"v": numpy.arange(5)})
print(json.dumps({"moved": moved, "regions": len(spans), "write": write, "child": os.waitstatus_to_exitcode(status),
                  "after": string.ascii_letters[:3], "sum": int(frame["v"].sum())}))
"""


def test_share_memory_moves_the_heap_into_sealed_private_files():
    # The library is built into the virtualenv by make; the check runs in
    # a process of its own, as the zygote would.
    # One thread, as in the jail: OpenBLAS starts one per core otherwise,
    # and the move refuses a process with more than one.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", SHARE_CHECK, os.path.dirname(HARNESS)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert isinstance(got["moved"], int) and got["moved"] > 16 << 20, got
    assert got["regions"] > 0
    # Sealed against writes (EPERM), or not even opened without the
    # capability that /proc/self/map_files takes.
    assert got["write"] in ("EPERM", "open: EPERM", "open: EACCES"), got
    assert got["child"] == 0, "a child's write reaches its own copy"
    assert got["after"] == "abc", "a child's write does not reach its parent"
    assert got["sum"] == 10, "the interpreter goes on working"


# --------------------------------------------------------------------------
# The zygote's fork loop in C (native/zygote_loop.c)

LOOP_CHECK = r"""
import ctypes, json, os, signal, socket, sys
sys.path.insert(0, sys.argv[1])
import numpy
import harness
control = socket.socket(fileno=int(sys.argv[2]))
k = harness.Kernel()
lib = k.native()
assert not isinstance(lib, str), lib
wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
loop = harness.fork_loop_of(lib)
fds = (ctypes.c_int * 3)()
mt = harness.numpy_generator_state()
assert mt is not None
got = loop(control.fileno(), wake_r, 0, fds, mt, int(sys.argv[3]), None)
if got == 0:
    channel, out, err = fds
    os.write(out, b"out")
    os.write(err, b"err")
    _, key, pos = numpy.random.get_state()[:3]
    os.write(channel, json.dumps({"pid": os.getpid(), "pos": int(pos), "key": key[:4].tolist(),
                                  "draw": float(numpy.random.rand())}).encode())
    os._exit(7)
print(got, flush=True)
"""


def _loop(before_fork=0):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = subprocess.Popen([sys.executable, "-c", LOOP_CHECK, os.path.dirname(HARNESS), str(theirs.fileno()),
                          str(before_fork)],
                         pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE, text=True)
    theirs.close()
    ours.settimeout(30)
    return ours, p


@pytest.mark.parametrize("before_fork", [0, 1])
def test_fork_loop_forks_passes_the_childs_descriptors_and_reports_its_exit(before_fork):
    # With before_fork as on Python 3.13 and later, without as before.
    control, p = _loop(before_fork)
    children = []
    with control:
        for tag in ("c-1_x", "c2"):
            control.send(b'{"fork": "%s"}' % tag.encode())
            data, fds, _, _ = socket.recv_fds(control, 1024, 3)
            reply = json.loads(data)
            assert reply["forked"] == tag and reply["pid"] > 0, reply
            assert len(fds) == 3
            channel, out, err = fds
            try:
                # The child's ends of its channel and pipes are the ones passed.
                said = json.loads(os.read(channel, 1000))
                assert said["pid"] == reply["pid"]
                assert os.read(out, 100) == b"out"
                assert os.read(err, 100) == b"err"
            finally:
                for fd in fds:
                    os.close(fd)
            assert json.loads(control.recv(1024)) == {"exited": reply["pid"], "signal": 0, "code": 7}
            children.append(said)
        # numpy's generator: a fresh state in each child, the next draw
        # regenerating it, the first word's top bit set (never all zero).
        first, second = children
        assert first["pos"] == second["pos"] == 624
        assert first["key"] != second["key"] and first["draw"] != second["draw"]
        assert all(c["key"][0] & 0x80000000 for c in children)
        # A message that is not a fork with a plain tag ends the loop.
        control.send(b'{"fork": "a\\"b"}')
        assert p.stdout.read().strip() == str(-errno.EPROTO)
    assert p.wait(30) == 0


def test_fork_loop_returns_when_the_service_closes_the_socket():
    control, p = _loop()
    control.close()
    assert p.stdout.read().strip() == "1"
    assert p.wait(30) == 0


# --------------------------------------------------------------------------
# A child's set-up in C (native/child_setup.c), as the fork loop runs it

SETUP_CHECK = r"""
import ctypes, json, os, signal, socket, struct, sys
sys.path.insert(0, sys.argv[1])
import harness
control = socket.socket(fileno=int(sys.argv[2]))
bound = sys.argv[3]
k = harness.Kernel()
if sys.argv[4] == "1":
    k.drop_bounding_set()  # as the zygote does, once for all its children
lib = k.native()
assert not isinstance(lib, str), lib
z = harness.Zygote.__new__(harness.Zygote)  # not pid 1: its checks are not what this tests
z.kernel, z.tmp_size = k, "size=8m,mode=1777"
z.devnull = os.open(os.devnull, os.O_WRONLY)
z.binds = {"-": ["/nonexistent/pyexec-bind"], "none": []}.get(bound, [bound])
z.links = {"/tmp/a/b/link": "/etc/hostname"}
z.filter = harness.SeccompProgram(struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000))  # allow all
setup, keep = z.child_setup()
wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
stray = os.open("/etc/hostname", os.O_RDONLY)
loop = harness.fork_loop_of(lib)
fds = (ctypes.c_int * 3)()
got = loop(control.fileno(), wake_r, harness.CHILD_NAMESPACES, fds, None, 0, setup)
if got == 0:
    channel = fds[0]
    listed = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own

    def is_open(fd):
        try:
            os.fstat(fd)
            return True
        except OSError:
            return False
    others = [fd for fd in (control.fileno(), wake_r, wake_w, stray) if is_open(fd)]
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    lo = socket.socket()
    lo.bind(("127.0.0.1", 0))
    lo.listen()
    socket.create_connection(lo.getsockname(), timeout=5).close()
    os.write(channel, json.dumps({
        "fds": listed, "own": list(fds) + [z.devnull],
        "others": others,
        "pid": os.getpid(), "sid": os.getsid(0), "cwd": os.getcwd(),
        "caps": {n: v.strip() for n, v in status.items() if n.startswith("Cap")},
        "seccomp": status["Seccomp"].strip(), "nnp": status["NoNewPrivs"].strip(),
        "tmp": sorted(os.listdir("/tmp")), "link": os.readlink("/tmp/a/b/link"),
        "bound": os.listdir(bound), "shm": os.listdir("/dev/shm"),
        "proc": sorted(p for p in os.listdir("/proc") if p.isdigit()),
    }).encode())
    os._exit(0)
print(got, flush=True)
"""


def _setup_loop(bound, drop_bounding=True):
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the child set-up test needs root (namespaces and mounts), as CI has")
        pytest.skip("needs root (namespaces and mounts)")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = subprocess.Popen([sys.executable, "-c", SETUP_CHECK, os.path.dirname(HARNESS), str(theirs.fileno()), bound,
                          "1" if drop_bounding else "0"],
                         pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    theirs.close()
    ours.settimeout(30)
    return ours, p


def test_child_setup_in_c_confines_the_child():
    with tempfile.TemporaryDirectory(dir="/tmp") as bound:
        with open(os.path.join(bound, "kept"), "w") as f:
            f.write("x")
        control, p = _setup_loop(bound)
        with control:
            control.send(b'{"fork": "c"}')
            data, fds, _, _ = socket.recv_fds(control, 1024, 3)
            assert json.loads(data)["pid"] > 0
            try:
                got = json.loads(os.read(fds[0], 100000))
            finally:
                for fd in fds:
                    os.close(fd)
            assert json.loads(control.recv(1024))["code"] == 0
        p.kill()
        p.wait(30)
    # Only its own descriptors: the zygote's are closed.
    assert got["others"] == [] and got["fds"] == 3 + len(set(got["own"])), got
    assert got["pid"] == 1 and got["sid"] == 1, "pid 1 of its own namespace, in a session of its own"
    assert got["cwd"] == "/tmp"
    assert set(got["caps"]) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}
    assert all(int(v, 16) == 0 for v in got["caps"].values()), got["caps"]
    assert got["seccomp"] == "2" and got["nnp"] == "1"
    # A fresh /tmp holding only the links and the mounts bound again.
    assert got["tmp"] == sorted(["a", bound[len("/tmp/"):]]), got["tmp"]
    assert got["link"] == "/etc/hostname" and got["bound"] == ["kept"]
    assert got["shm"] == [] and got["proc"] == ["1"]


@pytest.mark.parametrize("bound, drop_bounding, why", [
    ("-", True, "/nonexistent/pyexec-bind: No such file or directory"),
    # A capability left in the bounding set is found, and the child ends.
    ("none", False, "capabilities left after dropping them"),
])
def test_child_setup_in_c_ends_a_child_it_cannot_confine(bound, drop_bounding, why):
    control, p = _setup_loop(bound, drop_bounding)
    with control:
        control.send(b'{"fork": "c"}')
        data, fds, _, _ = socket.recv_fds(control, 1024, 3)
        pid = json.loads(data)["pid"]
        try:
            assert os.read(fds[0], 100) == b"", "it never runs the interpreter again"
        finally:
            for fd in fds:
                os.close(fd)
        assert json.loads(control.recv(1024)) == {"exited": pid, "signal": 0, "code": harness.CHILD_SETUP_FAILED}
    p.kill()
    _, err = p.communicate(timeout=30)
    assert "pyexec harness: child set-up failed: " + why in err


# --------------------------------------------------------------------------
# A waiting fork child's walk of the request path (Child.warm_path)

WARM_CHECK = r"""
import json, linecache, os, select, sys
sys.path.insert(0, sys.argv[1])
import harness

class Zygote:
    devnull = os.open(os.devnull, os.O_WRONLY)

child = harness.Child(Zygote(), -1, -1, -1)
made = harness.ready_workdir(harness.WORKDIR)
out_dir = os.path.join(harness.WORKDIR, harness.OUTPUT_DIR)
stdout_before = os.fstat(1).st_ino
main_before = sys.modules.get("__main__")
r, w = os.pipe()
unread = select.poll()
unread.register(r, select.POLLIN)
child.warm_path(unread, made)
walked = {"stdout": os.fstat(1).st_ino == stdout_before, "output": os.listdir(out_dir),
          "linecache": harness.SCRIPT_NAME in linecache.cache, "main": sys.modules.get("__main__") is main_before}
# A request already there: the walk stops and leaves it unread.
os.write(w, b'{"id": "r"}\n')
child.warm_path(unread, made)
walked["request"] = os.read(r, 100).decode()
print(json.dumps(walked))
"""


def test_warm_path_leaves_nothing_behind_and_stops_for_a_request(tmp_path):
    env = dict(os.environ, PYEXEC_WORKDIR=str(tmp_path / "work"))
    p = subprocess.run([sys.executable, "-c", WARM_CHECK, os.path.dirname(HARNESS)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    # The walk's script prints: nothing of it reaches the real stdout.
    got = json.loads(p.stdout)
    assert got == {"stdout": True, "output": [], "linecache": False, "main": True,
                   "request": '{"id": "r"}\n'}, got


def test_child_setup_is_left_to_python_past_the_c_limit_of_binds():
    z = harness.Zygote.__new__(harness.Zygote)
    z.kernel, z.tmp_size, z.devnull, z.links = harness.Kernel(), "size=8m", 0, {}
    z.filter = harness.SeccompProgram(struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000))
    z.binds = ["/tmp/b%d" % i for i in range(harness.CHILD_SETUP_MAX_BINDS)]
    setup, keep = z.child_setup()
    assert setup is not None and keep is not None
    z.binds.append("/tmp/one-more")
    assert z.child_setup() == (None, None), "the child confines itself in Python"
