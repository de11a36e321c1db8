"""main's keyword arguments: the checks of args against main's signature,
made before any of the script runs, and the call with them."""

import json
import os
import subprocess
import tempfile
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness.py")
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402


@pytest.mark.parametrize(
    "source, args, message",
    [
        # No args: the rule of a main without arguments, as before.
        ("def main(a):\n    return a\n", None, "main() must take no required arguments (it has: a)"),
        ("def main(*, k):\n    return k\n", None, "main() must take no required arguments (it has: k)"),
        # A required parameter args leaves out.
        ("def main(city, days=7):\n    return city\n", {}, "args is missing main()'s required parameter: city"),
        ("def main(city, *, days):\n    return city\n", {"city": "Oslo"},
         "args is missing main()'s required parameter: days"),
        ("def main(a, b):\n    return a\n", {}, "required parameters: a, b"),
        # A member main does not accept.
        ("def main(city):\n    return city\n", {"city": "Oslo", "cty": 1},
         "main() has no parameter 'cty' given in args (it accepts: city)"),
        ("def main():\n    return 1\n", {"x": 1}, "main() has no parameter 'x' given in args (it accepts: none)"),
        ("def main(*rest):\n    return 1\n", {"rest": 1}, "main() has no parameter 'rest'"),
        ("def main():\n    return 1\n", {"m%02d" % i: i for i in range(25)},
         "main() has no parameter 'm00', 'm01', 'm02', 'm03', 'm04', 'm05', 'm06', 'm07', 'm08', 'm09' and 15 more"),
        # Positional-only parameters cannot be named.
        ("def main(a, /):\n    return a\n", {"a": 1}, "positional-only parameters that args cannot give: a"),
        ("def main(a, /, **kw):\n    return a\n", {"a": 1}, "positional-only parameters that args cannot give: a"),
        ("def main(a, /):\n    return a\n", {}, "positional-only parameters that args cannot give: a"),
        ("def main(a=0, /, b=1):\n    return a\n", {"a": 1}, "main()'s parameter 'a' is positional-only"),
        # Not an object (the service refuses these earlier).
        ("def main():\n    return 1\n", [1], "args must be a JSON object"),
    ],
)
def test_args_refused_naming_the_parameter(source, args, message):
    with pytest.raises(harness.ValidationError) as info:
        harness.validate(source, "standard", None, args)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "source, args",
    [
        ("def main():\n    return 1\n", None),
        ("def main():\n    return 1\n", {}),
        ("def main(a=1, *args, k=2, **kw):\n    return a\n", None),
        ("def main(city, days=7):\n    return city\n", {"city": "Oslo"}),
        ("def main(city, *, days):\n    return city\n", {"city": "Oslo", "days": 3}),
        ("def main(**kw):\n    return kw\n", {"anything": 1, "not-an-identifier": 2, "kw": 3}),
        ("def main(a=0, /, **kw):\n    return kw\n", {"a": 1}),
        ("def main(*rest, k):\n    return k\n", {"k": 1}),
    ],
)
def test_args_accepted(source, args):
    assert harness.validate(source, "standard", None, args) is not None


def test_signature_is_read_without_running_the_script():
    # A default is an expression of the script: reading the signature must
    # not evaluate it.
    source = "def main(a=print('ran') or 1, *, b=open('/nonexistent')):\n    return a\n"
    assert harness.validate(source, "standard", None, {}) is not None


@pytest.fixture
def proc():
    p = subprocess.Popen(
        [sys.executable, "-I", "-B", HARNESS],
        env=dict(os.environ, PYEXEC_WORKDIR=os.path.join(tempfile.mkdtemp(), "work")),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert json.loads(p.stdout.readline())["ready"] is True

    def ask(script, args=None):
        req = {"id": "t1", "script": script, "timeout_ms": 5000,
               "limits": {"max_output_bytes": 1 << 20, "validation": "standard"}}
        if args is not None:
            req["args"] = args
        p.stdin.write((json.dumps(req) + "\n").encode())
        p.stdin.flush()
        line = p.stdout.readline()
        assert line, p.stderr.read().decode()
        return json.loads(line)

    yield ask
    p.kill()
    p.wait()


def test_main_is_called_with_args(proc):
    r = proc("def main(city, days=7):\n    return {'city': city, 'days': days}\n", {"city": "Oslo"})
    assert r["error"] is None
    assert r["result"] == {"city": "Oslo", "days": 7}


def test_args_keep_their_json_types(proc):
    args = {"n": 2**70, "x": 1.5, "s": "é", "l": [1, None, True], "o": {"k": "v"}, "z": None}
    r = proc("def main(**kw):\n    return {k: [type(v).__name__, v] for k, v in kw.items()}\n", args)
    assert r["error"] is None
    assert r["result"] == {k: [type(v).__name__, v] for k, v in args.items()}


def test_refused_args_run_nothing(proc):
    r = proc("print('module ran')\ndef main(city):\n    print('main ran')\n    return city\n", {"town": "Oslo"})
    assert r["error"] == {"type": "validation_error",
                          "message": "main() has no parameter 'town' given in args (it accepts: city)"}
    assert r["result"] is None
    assert r["stdout"] == ""


def test_no_args_calls_main_without_arguments(proc):
    r = proc("def main():\n    return 'plain'\n")
    assert r["error"] is None
    assert r["result"] == "plain"
