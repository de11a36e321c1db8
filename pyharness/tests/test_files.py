"""Input files written into the script's working directory, and the files
it leaves under output/ read back: paths, links and limits."""

import base64
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness.py")
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402


def b64(data):
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("path", [
    "", "/etc/passwd", "../x", "a/../b", "a/..", "./a", "a/./b", "a//b", "a/", "a\\b", "a\x00b",
    "x" * 256, "a/" * 600 + "b", "output", None, 3,
])
def test_bad_paths_are_refused(path):
    with pytest.raises(harness.FileError):
        harness.check_path(path)


@pytest.mark.parametrize("path", ["a", "data/sales.csv", "output/seed.txt", ".hidden", "a..b", "é/ü.txt", "x" * 255])
def test_plain_relative_paths_are_taken(path):
    assert harness.check_path(path) == path.split("/")


def test_write_files_makes_the_tree_and_output(tmp_path):
    top = str(tmp_path / "work")
    harness.write_files(top, [
        {"path": "data/sales.csv", "content": b64(b"a,b\n1,2\n")},
        {"path": "data/deep/bin", "content": b64(b"\x00\xff")},
        {"path": "top.txt", "content": ""},
    ])
    assert (tmp_path / "work/data/sales.csv").read_bytes() == b"a,b\n1,2\n"
    assert (tmp_path / "work/data/deep/bin").read_bytes() == b"\x00\xff"
    assert (tmp_path / "work/top.txt").read_bytes() == b""
    assert (tmp_path / "work/output").is_dir()


@pytest.mark.parametrize("files, message", [
    ([{"path": "a", "content": ""}, {"path": "a", "content": ""}], "'a' is given twice"),
    ([{"path": "../a", "content": ""}], "'../a'"),
    ([{"path": "a", "content": "not base64!"}], "'a': content is not base64"),
    # A file, then the same name as a directory: never written through.
    ([{"path": "a", "content": ""}, {"path": "a/b", "content": ""}], "'a/b' cannot be written"),
])
def test_write_files_refuses_naming_the_path(tmp_path, files, message):
    with pytest.raises(harness.FileError) as info:
        harness.write_files(str(tmp_path / "work"), files)
    assert message in str(info.value)


def test_write_files_never_follows_a_link(tmp_path):
    # The directory is fresh, so a link in it can only be planted: a
    # directory reached through one is refused, not followed.
    outside = tmp_path / "outside"
    outside.mkdir()
    top = tmp_path / "work"
    top.mkdir()
    os.symlink(str(outside), str(top / "d"))
    fd = os.open(str(top), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError):
            harness._open_dir(fd, "d", True)
    finally:
        os.close(fd)
    # write_files makes top itself: an existing one is refused.
    with pytest.raises(harness.FileError) as info:
        harness.write_files(str(top), [{"path": "d/x", "content": ""}])
    assert "cannot be made" in str(info.value)
    assert os.listdir(str(outside)) == []


def make_output(tmp_path):
    out = tmp_path / "work" / "output"
    out.mkdir(parents=True)
    return out


def test_collect_reads_files_with_their_media_type(tmp_path):
    out = make_output(tmp_path)
    (out / "summary.csv").write_text("city,n\nOslo,2\n")
    (out / "sub").mkdir()
    (out / "sub" / "img.png").write_bytes(b"\x89PNG\r\n")
    (out / "x.csv.gz").write_bytes(b"\x1f\x8b")
    (out / "noext").write_bytes(b"?")
    files, left, truncated = harness.collect_output(str(tmp_path / "work"), 10, 1000)
    assert [f["path"] for f in files] == ["noext", "sub/img.png", "summary.csv", "x.csv.gz"]
    by = {f["path"]: f for f in files}
    assert by["summary.csv"]["media_type"] == "text/csv"
    assert base64.b64decode(by["summary.csv"]["content"]) == b"city,n\nOslo,2\n"
    assert by["sub/img.png"]["media_type"] == "image/png"
    assert by["x.csv.gz"]["media_type"] == "application/gzip"
    assert by["noext"]["media_type"] == "application/octet-stream"
    assert left == [] and truncated is False


def test_collect_follows_no_link_and_opens_no_special_file(tmp_path):
    out = make_output(tmp_path)
    os.symlink("/etc/passwd", str(out / "passwd"))
    os.symlink(HARNESS, str(out / "harness.py"))
    os.symlink("/etc", str(out / "etc"))
    os.mkfifo(str(out / "fifo"))
    files, left, truncated = harness.collect_output(str(tmp_path / "work"), 10, 1 << 20)
    assert files == []
    reasons = {f["path"]: f["reason"] for f in left}
    assert reasons == {
        "passwd": "a symbolic link: not followed",
        "harness.py": "a symbolic link: not followed",
        "etc": "a symbolic link: not followed",
        "fifo": "not a regular file",
    }


def test_output_itself_a_link_is_not_followed(tmp_path):
    (tmp_path / "work").mkdir()
    os.symlink("/etc", str(tmp_path / "work" / "output"))
    files, left, _ = harness.collect_output(str(tmp_path / "work"), 10, 1 << 20)
    assert files == []
    assert left[0]["path"] == "output" and "not followed" in left[0]["reason"]


def test_no_output_directory_is_no_files(tmp_path):
    assert harness.collect_output(str(tmp_path / "nothing"), 10, 10) == ([], [], False)


def test_collect_limits_count_and_bytes_and_names_what_it_leaves_out(tmp_path):
    out = make_output(tmp_path)
    for i in range(3):
        (out / ("f%d.txt" % i)).write_bytes(b"x" * 10)
    (out / "big.bin").write_bytes(b"y" * 100)
    files, left, truncated = harness.collect_output(str(tmp_path / "work"), 2, 25)
    assert len(files) == 2
    assert sum(len(base64.b64decode(f["content"])) for f in files) <= 25
    assert len(left) == 2
    assert {f["path"] for f in files} | {f["path"] for f in left} == {"f0.txt", "f1.txt", "f2.txt", "big.bin"}
    assert any("over the 2-file limit" in f["reason"] or "byte limit" in f["reason"] for f in left)
    assert truncated is False


def test_ten_thousand_files_cost_a_bounded_walk(tmp_path):
    out = make_output(tmp_path)
    for i in range(10000):
        (out / ("f%05d" % i)).write_bytes(b"x")
    files, left, truncated = harness.collect_output(str(tmp_path / "work"), 100, 1 << 20)
    assert len(files) == 100
    assert len(left) == 100
    assert all(f["reason"] == "over the 100-file limit" for f in left)
    assert truncated is True


def test_a_script_reads_its_input_and_returns_its_output(tmp_path):
    env = dict(os.environ, PYEXEC_WORKDIR=str(tmp_path / "work"))
    p = subprocess.Popen([sys.executable, "-I", "-B", HARNESS], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert json.loads(p.stdout.readline())["ready"] is True
        script = (
            "import os\n"
            "def main(scale):\n"
            "    n = int(open('data/n.txt').read()) * scale\n"
            "    with open('output/result.txt', 'w') as f:\n"
            "        f.write(str(n))\n"
            "    return {'cwd': os.getcwd(), 'n': n}\n"
        )
        req = {"id": "t1", "script": script, "timeout_ms": 5000, "args": {"scale": 3},
               "files": [{"path": "data/n.txt", "content": b64(b"14")}],
               "limits": {"max_output_bytes": 1 << 20, "validation": "standard",
                          "max_output_files": 10, "max_output_files_bytes": 1000}}
        p.stdin.write((json.dumps(req) + "\n").encode())
        p.stdin.flush()
        reply = json.loads(p.stdout.readline())
    finally:
        p.stdin.close()
        p.wait(timeout=10)
        p.stdout.close()
        p.stderr.close()
    assert reply["error"] is None, reply
    assert reply["result"] == {"cwd": str(tmp_path / "work"), "n": 42}
    assert reply["files"] == [{"path": "result.txt", "media_type": "text/plain", "content": b64(b"42")}]
    assert reply["files_left_out"] == [] and reply["files_truncated"] is False


def test_a_name_that_is_no_plain_path_is_named_briefly(tmp_path):
    out = make_output(tmp_path)
    deep = out
    for _ in range(5):
        deep = deep / ("d" * 250)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    (out / "a\\b").write_bytes(b"x")
    files, left, truncated = harness.collect_output(str(tmp_path / "work"), 10, 100)
    assert files == []
    assert len(left) == 2
    for f in left:
        assert len(f["path"]) <= 200
        assert f["reason"] == "its name is not a plain UTF-8 path of the allowed length"

