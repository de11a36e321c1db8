"""pyexec harness: the program that runs inside the jail.

It imports the modules PYEXEC_PRELOAD lists (numpy and pandas unless the
service says otherwise) once, announces itself on the protocol channel,
then serves requests: each request line carries one script, which is
validated with ``ast`` before any of it runs, then executed with fds 1 and 2
captured. The reply is one JSON line on the private protocol descriptor.

The protocol travels on the descriptors the harness was started with (0 for
requests, 1 for replies). They are moved to private, close-on-exec
descriptors before anything else happens, so nothing the script prints can
reach the service except through the capture.

Protocol (one JSON object per line, UTF-8):
  harness -> service  {"ready": true, "protocol": 1, "python": ..., ...}
  service -> harness  {"id", "script", "timeout_ms", "limits": {...},
                       "args", "files": [{"path", "content" (base64)}]}
  harness -> service  {"id", "result", "stdout", "stderr", "error",
                       "stdout_truncated", "stderr_truncated", "files":
                       [{"path", "media_type", "content" (base64)}],
                       "files_left_out": [{"path", "reason"}],
                       "files_truncated"}

A worker serves one request, whatever its outcome: once a script has been
sent, the process may be the script's (it can reach the protocol
descriptors), so the service never sends it another and the harness exits
after answering.
"""

import ast
import base64
import builtins
import datetime
import decimal
import errno
import gc
import importlib
import inspect
import io
import json
import linecache
import math
import mimetypes
import os
import re
import resource
import select
import signal
import stat
import sys
import threading
import time
import traceback
import types
import warnings

PROTOCOL = 1
SCRIPT_NAME = "<script>"
DEFAULT_MAX_LINE = 64 * 1024 * 1024

# Calls and imports refused by the "standard" validation policy.
DENIED_CALLS = {"eval", "exec", "compile", "__import__"}
MINIMAL_DENIED_CALLS = {"eval", "exec"}
DENIED_OS_CALLS = {"system", "popen"}
DENIED_OS_PREFIXES = ("exec", "spawn")
DENIED_MODULES = {"subprocess", "ctypes", "pty"}


class ValidationError(Exception):
    """The script is not acceptable; the message is shown to the client."""


# ---------------------------------------------------------------------------
# Validation


def _os_call_denied(name):
    return name in DENIED_OS_CALLS or name.startswith(DENIED_OS_PREFIXES)


def _signature(fn):
    """main's signature as inspect describes it, read from its definition:
    validation runs before any of the script does, so a request refused for
    its args runs nothing. A default is only marked present (its value is
    an expression that has not been evaluated)."""
    P = inspect.Parameter
    a = fn.args
    params = []
    positional = a.posonlyargs + a.args
    without_default = len(positional) - len(a.defaults)
    for i, arg in enumerate(positional):
        kind = P.POSITIONAL_ONLY if i < len(a.posonlyargs) else P.POSITIONAL_OR_KEYWORD
        params.append(P(arg.arg, kind, default=P.empty if i < without_default else None))
    if a.vararg:
        params.append(P(a.vararg.arg, P.VAR_POSITIONAL))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append(P(arg.arg, P.KEYWORD_ONLY, default=P.empty if default is None else None))
    if a.kwarg:
        params.append(P(a.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(params)


def _check_args(sig, args):
    """Refuse args main cannot be called with as keyword arguments, naming
    the parameters at fault. args None is a request without args."""
    P = inspect.Parameter
    params = sig.parameters.values()
    required = [p.name for p in params
                if p.default is P.empty and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)]
    if args is None:
        if required:
            raise ValidationError(
                "main() must take no required arguments (it has: %s), "
                "or the request must give them in args" % ", ".join(required)
            )
        return
    if not isinstance(args, dict):
        raise ValidationError("args must be a JSON object")
    # Positional-only parameters cannot be named, so args cannot fill them
    # (a member of that name would go to **kwargs, if any).
    posonly = [p.name for p in params if p.kind is P.POSITIONAL_ONLY and p.default is P.empty]
    if posonly:
        raise ValidationError(
            "main() has positional-only parameters that args cannot give: %s "
            "(make them keyword parameters, or give them defaults)" % ", ".join(posonly)
        )
    named = {p.name for p in params if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}
    takes_any = any(p.kind is P.VAR_KEYWORD for p in params)
    if not takes_any:
        unknown = [k for k in args if k not in named]
        named_posonly = [k for k in unknown
                         if k in sig.parameters and sig.parameters[k].kind is P.POSITIONAL_ONLY]
        if named_posonly:
            raise ValidationError(
                "main()'s parameter %s is positional-only: args can give only "
                "parameters that take a keyword" % ", ".join(repr(k) for k in named_posonly)
            )
        if unknown:
            raise ValidationError(
                "main() has no parameter %s given in args (it accepts: %s)" % (
                    ", ".join(repr(k) for k in unknown[:10])
                    + (" and %d more" % (len(unknown) - 10) if len(unknown) > 10 else ""),
                    ", ".join(p.name for p in params if p.name in named) or "none",
                )
            )
    missing = [name for name in required if name not in args]
    if missing:
        raise ValidationError(
            "args is missing main()'s required parameter%s: %s" % (
                "s" if len(missing) > 1 else "", ", ".join(missing))
        )


def validate(source, policy="standard", max_bytes=None, args=None):
    """Parse and check a script, and that its main can be called with the
    keyword arguments args (None: with none). Returns the parsed module or
    raises ValidationError with a message meant for the client."""
    if not isinstance(source, str):
        raise ValidationError("script must be a string")
    size = len(source.encode("utf-8", "surrogatepass"))
    if max_bytes is not None and size > max_bytes:
        raise ValidationError(
            "script is %d bytes, over the %d-byte limit" % (size, max_bytes)
        )
    try:
        tree = ast.parse(source, filename=SCRIPT_NAME)
    except SyntaxError as exc:
        raise ValidationError(
            "syntax error at line %s: %s" % (exc.lineno, exc.msg)
        ) from None
    except (RecursionError, MemoryError):
        raise ValidationError("script is too deeply nested to parse") from None
    except ValueError as exc:  # e.g. NUL bytes in the source
        raise ValidationError("script cannot be parsed: %s" % exc) from None

    main = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main":
            main = node
    if main is None:
        raise ValidationError("script must define main()")
    if isinstance(main, ast.AsyncFunctionDef):
        raise ValidationError("main() must be a plain function, not async")
    _check_args(_signature(main), args)

    if policy == "minimal":
        denied_calls = MINIMAL_DENIED_CALLS
        check_os = check_imports = False
    else:
        denied_calls = DENIED_CALLS
        check_os = check_imports = True

    os_names = {"os"}  # names bound to the os module (import os as x)
    if check_os:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "os":
                        os_names.add(alias.asname or "os")

    # ast.walk is iterative, so a deep tree cannot exhaust the C stack here.
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in denied_calls:
                raise ValidationError(
                    "use of %s() is not allowed (line %s)" % (func.id, line)
                )
            if isinstance(func, ast.Attribute):
                owner = func.value
                if (
                    func.attr in denied_calls
                    and isinstance(owner, ast.Name)
                    and owner.id in ("builtins", "__builtins__")
                ):
                    raise ValidationError(
                        "use of %s() is not allowed (line %s)" % (func.attr, line)
                    )
                if (
                    check_os
                    and isinstance(owner, ast.Name)
                    and owner.id in os_names
                    and _os_call_denied(func.attr)
                ):
                    raise ValidationError(
                        "use of os.%s() is not allowed (line %s)" % (func.attr, line)
                    )
        elif check_imports and isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in DENIED_MODULES:
                    raise ValidationError(
                        "import of %s is not allowed (line %s)" % (top, line)
                    )
        elif check_imports and isinstance(node, ast.ImportFrom):
            module = node.module or ""
            top = module.split(".")[0]
            if node.level == 0 and top in DENIED_MODULES:
                raise ValidationError(
                    "import of %s is not allowed (line %s)" % (top, line)
                )
            if node.level == 0 and module == "os":
                for alias in node.names:
                    if _os_call_denied(alias.name):
                        raise ValidationError(
                            "use of os.%s() is not allowed (line %s)" % (alias.name, line)
                        )
            if node.level == 0 and module == "builtins":
                for alias in node.names:
                    if alias.name in denied_calls:
                        raise ValidationError(
                            "use of %s() is not allowed (line %s)" % (alias.name, line)
                        )
    return tree


# ---------------------------------------------------------------------------
# Results


class InvalidResult(Exception):
    """main() returned something that is not JSON."""


class ResultTooLarge(Exception):
    """The encoded result grew past the output cap before it was finished."""


# Rows (or Series values) encoded at a time: the whole table is never held
# as Python objects, only its JSON text, which the output cap bounds.
_CHUNK = 2048

# How to turn a value that has no JSON form into one, by type name; the
# message names the type, never the value.
_HINTS = {
    "set": "use list(...)",
    "frozenset": "use list(...)",
    "bytes": "decode it (.decode()) or base64-encode it",
    "bytearray": "decode it (.decode()) or base64-encode it",
    "memoryview": "decode it (.tobytes().decode()) or base64-encode it",
    "complex": "use [z.real, z.imag] or str(z)",
    "timedelta": "use .total_seconds()",
    "Timedelta": "use .total_seconds()",
    "timedelta64": "divide it by np.timedelta64(1, 's') for seconds",
    "generator": "use list(...)",
}


def _hint(value):
    name = type(value).__name__
    if name in _HINTS:
        return _HINTS[name]
    if hasattr(value, "to_dict"):
        return "DataFrame-like: use .to_dict()"
    if hasattr(value, "tolist"):
        return "array-like: use .tolist()"
    if hasattr(value, "__iter__") and hasattr(value, "__next__"):
        return "an iterator: use list(...)"
    return "return a dict, list, str, number, bool or None built from it (for an object, a dict of its fields)"


class _Encoder:
    """json.dumps' default= hook, used only for values json cannot encode
    itself, so a result made of plain JSON types costs exactly one dumps.

    numpy scalars and arrays, dates and times, DataFrames, Series and
    Decimals get a JSON form. A Decimal keeps its digits and a table is
    encoded chunk by chunk, so both come out as JSON text: the hook returns
    a placeholder string for them, replaced by that text once dumps ends."""

    def __init__(self, cap=None):
        self.cap = cap
        self.nonce = None
        self.texts = []

    def encode(self, value):
        text = json.dumps(value, default=self.default, allow_nan=False, ensure_ascii=True)
        return self.expand(text)

    def expand(self, text):
        if not self.texts:
            return text
        return re.sub('"%s([0-9]+)"' % self.nonce, lambda m: self.texts[int(m.group(1))], text)

    def raw(self, text):
        """A placeholder for the JSON text ``text``."""
        if self.nonce is None:
            # Unguessable, so no string the script returns can be taken for one.
            self.nonce = "pyexec-raw-%s-" % os.urandom(12).hex()
        self.texts.append(text)
        return "%s%d" % (self.nonce, len(self.texts) - 1)

    def default(self, value):
        np = sys.modules.get("numpy")
        pd = sys.modules.get("pandas")
        if pd is not None:
            if isinstance(value, pd.DataFrame):
                return self.raw(self.frame(value, pd))
            if isinstance(value, pd.Series):
                return self.raw(self.series(value, pd))
            if value is pd.NaT or value is pd.NA:
                raise TypeError(
                    "Object of type %s is not JSON serializable; a missing value becomes null only "
                    "inside a DataFrame or Series: return None" % type(value).__name__
                )
        if np is not None:
            if isinstance(value, np.ndarray):
                if value.dtype.kind in "Mm":
                    return list(value)  # each element comes back here as a datetime64
                return value.tolist()
            if isinstance(value, np.datetime64):
                if np.isnat(value):
                    raise TypeError(
                        "Object of type datetime64 (NaT) is not JSON serializable; a missing value "
                        "becomes null only inside a DataFrame or Series: return None"
                    )
                if pd is not None:
                    try:
                        return pd.Timestamp(value).isoformat()
                    except (ValueError, OverflowError):  # out of a Timestamp's range
                        pass
                return np.datetime_as_string(value)
            if isinstance(value, np.generic) and not isinstance(value, np.timedelta64):
                return value.item()
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return value.isoformat()  # pandas.Timestamp is a datetime
        if isinstance(value, decimal.Decimal):
            if not value.is_finite():
                raise ValueError("Out of range float values are not JSON compliant: Decimal")
            return self.raw(str(value))
        raise TypeError("Object of type %s is not JSON serializable; %s" % (type(value).__name__, _hint(value)))

    def nested(self, value):
        """Encode a chunk of a table with this same encoder."""
        return self.expand(json.dumps(value, default=self.default, allow_nan=False, ensure_ascii=True))

    @staticmethod
    def fill_missing(obj):
        """obj (a chunk) as objects, with NaN, None, NaT and pd.NA as None."""
        obj = obj.astype(object)
        return obj.where(obj.notna(), None)

    def frame(self, df, pd):
        """A DataFrame as a list of records; labels become strings as in
        pandas' to_json (a MultiIndex column's key is its tuple's str)."""
        keys = [c if isinstance(c, str) else str(c) for c in df.columns]
        if len(set(keys)) != len(keys):
            raise TypeError(
                "Object of type DataFrame is not JSON serializable; its column names are not "
                "unique as strings: rename them"
            )
        parts, size = [], 0
        for start in range(0, len(df), _CHUNK):
            chunk = self.fill_missing(df.iloc[start : start + _CHUNK])
            rows = [dict(zip(keys, row)) for row in chunk.itertuples(index=False, name=None)]
            parts.append(self.nested(rows)[1:-1])
            size = self.check(size, parts[-1])
        return "[" + ", ".join(parts) + "]"

    def series(self, s, pd):
        """A Series as an object when its index is unique strings, else a list."""
        keyed = len(s) > 0 and s.index.is_unique and s.index.inferred_type == "string"
        parts, size = [], 0
        for start in range(0, len(s), _CHUNK):
            chunk = self.fill_missing(s.iloc[start : start + _CHUNK])
            if keyed:
                part = dict(zip(chunk.index, chunk.tolist()))
            else:
                part = chunk.tolist()
            parts.append(self.nested(part)[1:-1])
            size = self.check(size, parts[-1])
        return ("{%s}" if keyed else "[%s]") % ", ".join(parts)

    def check(self, size, part):
        """A table's text is part of the result's, so once it passes the
        cap the result does too: stop before encoding the rest."""
        size += len(part) + 2
        if self.cap is not None and size > self.cap:
            raise ResultTooLarge()
        return size


def encode_result(value, cap=None):
    """Encode main()'s return value as ASCII JSON text, or raise InvalidResult
    (or ResultTooLarge once a table's text passes cap bytes)."""
    try:
        return _Encoder(cap).encode(value)
    except ValueError as exc:
        text = str(exc)
        if text.endswith("Decimal"):
            text = "a Decimal NaN or Infinity is not JSON"
        elif "Out of range float" in text:
            text = "NaN and Infinity are not JSON (a NaN inside a DataFrame or Series becomes null, an Infinity does not)"
        raise InvalidResult(text) from None
    except (TypeError, RecursionError) as exc:
        raise InvalidResult(str(exc) or type(exc).__name__) from None
    except (ResultTooLarge, MemoryError):
        raise
    except Exception as exc:  # noqa: B902 - an odd value's own methods may fail any way
        raise InvalidResult("converting it failed with %s" % type(exc).__name__) from None


# ---------------------------------------------------------------------------
# Output capture


class Capture:
    """Captures what a script writes to one stream (fd 1 or 2) into a
    bounded buffer: the first ``cap`` bytes are kept, the rest counted and
    dropped, so a script printing without end never grows the harness.

    Writes through ``sys.stdout`` / ``sys.stderr`` (print, warnings) go
    straight into the buffer: no system call, no other thread. Writes to
    the descriptor itself (``os.write``, C code, a forked child) go through
    a pipe, drained into the same buffer by a thread that only wakes when
    such a write happens, and by the writer side before each of its own
    writes, so the two kinds keep the order they were made in. Output that
    processes left running by the script write after ``main`` returns is
    not captured.

    The pipe and thread are made ahead of the request (they cost more than
    running a small script); ``attach`` only points the stream at them."""

    def __init__(self, fd, cap):
        self.fd = fd
        self.cap = cap
        self.chunks = []
        self.kept = 0
        self.total = 0
        self._name = "stdout" if fd == 1 else "stderr"
        self._saved = None
        self._lock = threading.Lock()
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._read_end, False)
        self.stream = io.TextIOWrapper(
            io.BufferedWriter(_Sink(self)), encoding="utf-8", errors="backslashreplace")
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN)
        while True:
            try:
                poller.poll()
            except OSError:
                return
            with self._lock:
                if not self._drain_pipe():
                    return

    def _drain_pipe(self):
        """Move what the pipe holds into the buffer (the lock held).
        Returns False once every write end is closed."""
        while True:
            try:
                chunk = os.read(self._read_end, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self._keep(chunk)

    def _keep(self, data):
        self.total += len(data)
        room = self.cap - self.kept
        if room > 0:
            piece = bytes(data[:room])
            self.chunks.append(piece)
            self.kept += len(piece)

    def add(self, data):
        """Append data written through the stream object, after whatever
        reached the descriptor before it."""
        with self._lock:
            self._drain_pipe()
            self._keep(data)

    def attach(self):
        """From now on, writes to the stream and to its fd land here (and
        only they: what an earlier attach caught is dropped)."""
        self.chunks, self.kept, self.total = [], 0, 0
        os.dup2(self._write_end, self.fd)
        self._saved = getattr(sys, self._name)
        setattr(sys, self._name, self.stream)

    def finish(self, devnull):
        """Detach the stream and its fd and return what was written (text,
        truncated)."""
        try:
            self.stream.flush()
        except BaseException:  # noqa: B902 - a closed or broken stream must not lose the reply
            pass
        setattr(sys, self._name, self._saved)
        os.dup2(devnull, self.fd)
        with self._lock:
            self._drain_pipe()
            data = b"".join(self.chunks)
        return data.decode("utf-8", "replace"), self.total > self.kept

    def close(self):
        """End the thread and release the pipe (after finish)."""
        os.close(self._write_end)
        self._thread.join()
        os.close(self._read_end)


class _Sink(io.RawIOBase):
    """The raw end of a Capture's stream object."""

    def __init__(self, capture):
        super().__init__()
        self._capture = capture

    def writable(self):
        return True

    def write(self, data):
        self._capture.add(data)
        return len(data)

    def fileno(self):
        return self._capture.fd


def _plain_streams_in_child():
    """After a fork in a script, the child's print() must reach the
    descriptors (whose pipes the harness drains), not a buffer in the
    child's own memory that nobody reads."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        raw = getattr(getattr(getattr(sys, name), "buffer", None), "raw", None)
        if isinstance(raw, _Sink):
            setattr(sys, name, open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False))





# ---------------------------------------------------------------------------
# Files

# The script's working directory: input files are written there before it
# starts and output/ in it is read back after main returns. It is on the
# jail's /tmp, which is fresh for every script (a strict worker serves one;
# a fork jail's zygote empties /tmp after each child).
# (PYEXEC_WORKDIR moves it for the harness's tests, run outside a jail.)
WORKDIR = os.environ.get("PYEXEC_WORKDIR", "/tmp/work")
OUTPUT_DIR = "output"
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255
# Media types from Python's own table, never the host's /etc/mime.types,
# so the same file gets the same type wherever the service runs.
_MIME = mimetypes.MimeTypes()
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
               "xz": "application/x-xz", "br": "application/x-brotli",
               "compress": "application/x-compress"}


class FileError(Exception):
    """An input file cannot be written; the message names it."""


def check_path(path):
    """Refuse a path that is not plain and relative: the service's rules
    (pyexec.CheckFilePath), checked again where the files are written."""
    if not isinstance(path, str) or not path:
        raise FileError("file path is empty")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise FileError("file path %r is over %d bytes" % (path[:64], MAX_PATH_BYTES))
    if path.startswith("/"):
        raise FileError("file path %r is absolute: paths are relative to the working directory" % path)
    if "\x00" in path or "\\" in path:
        raise FileError("file path %r holds a NUL or a backslash" % path)
    for seg in path.split("/"):
        if seg in ("", ".", ".."):
            raise FileError("file path %r has an empty, '.' or '..' segment" % path)
        if len(seg.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise FileError("file path %r has a name over %d bytes" % (path, MAX_NAME_BYTES))
    if path == OUTPUT_DIR:
        raise FileError("file path %r is the directory for output files" % path)
    return path.split("/")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(parent_fd, name, make):
    """The directory name in parent_fd, made when make is set; never
    through a symlink (O_NOFOLLOW)."""
    if make:
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def prepare_workdir(top):
    """Make top (a fresh directory) with output/ in it. The harness does it
    before any script has run in this interpreter's /tmp, so nothing there
    can be a link yet."""
    try:
        os.mkdir(top, 0o755)
        os.mkdir(os.path.join(top, OUTPUT_DIR), 0o755)
    except OSError as exc:
        raise FileError("the working directory %s cannot be made: %s" % (top, exc.strerror or exc)) from None


def ready_workdir(top):
    """Prepare top ahead of the request, off its path; whether it was done
    (if not, handle makes it and reports the failure to the request)."""
    try:
        prepare_workdir(top)
    except FileError:
        return False
    return True


def write_files(top, files, made=False):
    """Make top with output/ in it unless it is made already, and write the
    input files under it: directories made with mkdir, files created with
    O_EXCL | O_NOFOLLOW, nothing opened through a link."""
    if not made:
        prepare_workdir(top)
    top_fd = os.open(top, _DIR_FLAGS)
    try:
        seen = set()
        for f in files or ():
            path = f.get("path") if isinstance(f, dict) else None
            segs = check_path(path)
            if path in seen:
                raise FileError("file path %r is given twice" % path)
            seen.add(path)
            try:
                data = base64.b64decode(f.get("content") or "", validate=True)
            except ValueError:
                raise FileError("file %r: content is not base64" % path) from None
            fd = os.dup(top_fd)
            try:
                for seg in segs[:-1]:
                    sub = _open_dir(fd, seg, True)
                    os.close(fd)
                    fd = sub
                out = os.open(segs[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o644, dir_fd=fd)
                try:
                    write_all(out, data)
                finally:
                    os.close(out)
            except OSError as exc:
                raise FileError("file %r cannot be written: %s" % (path, exc.strerror or exc)) from None
            finally:
                os.close(fd)
    finally:
        os.close(top_fd)


def media_type(name):
    kind, encoding = _MIME.guess_type(name, strict=False)
    if encoding:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


def collect_output(top, max_files, max_bytes):
    """What is under top/output/: (files, left_out, truncated). Files are
    read with O_NOFOLLOW and checked with fstat, so a symlink, a FIFO or a
    device is named as left out, never followed or opened; no more than
    2 * max_files + 1 entries are looked at (truncated says there were
    more), so a directory of thousands of files costs no more than a few."""
    files, left_out = [], []
    state = {"truncated": False, "total": 0, "seen": 0}
    budget = 2 * max(max_files, 0) + 1

    def leave(path, reason):
        if len(left_out) >= max_files:
            state["truncated"] = True
        else:
            left_out.append({"path": path, "reason": reason})

    try:
        top_fd = os.open(top, _DIR_FLAGS)
    except OSError:
        return files, left_out, False
    try:
        try:
            out_fd = os.open(OUTPUT_DIR, _DIR_FLAGS, dir_fd=top_fd)
        except FileNotFoundError:
            return files, left_out, False
        except OSError as exc:
            leave(OUTPUT_DIR, "output/ cannot be read (a symbolic link is not followed): %s" % (exc.strerror or exc))
            return files, left_out, state["truncated"]
    finally:
        os.close(top_fd)
    stack = [(out_fd, "")]
    try:
        while stack and not state["truncated"]:
            dir_fd, prefix = stack.pop()
            try:
                _collect_dir(dir_fd, prefix, stack, files, leave, state, budget, max_files, max_bytes)
            finally:
                os.close(dir_fd)
    finally:
        for dir_fd, _ in stack:
            os.close(dir_fd)
    files.sort(key=lambda f: f["path"])
    return files, left_out, state["truncated"]


def _collect_dir(dir_fd, prefix, stack, files, leave, state, budget, max_files, max_bytes):
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            state["seen"] += 1
            if state["seen"] > budget:
                state["truncated"] = True
                return
            name = entry.name
            path = prefix + name
            try:
                path.encode("utf-8")
                bad = "\\" in name or len(path.encode("utf-8")) > MAX_PATH_BYTES \
                    or len(name.encode("utf-8")) > MAX_NAME_BYTES
            except UnicodeEncodeError:
                bad = True
            if bad:
                leave(ascii(path)[:200], "its name is not a plain UTF-8 path of the allowed length")
                continue
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError as exc:
                leave(path, "cannot be read: %s" % (exc.strerror or exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    stack.append((_open_dir(dir_fd, name, False), path + "/"))
                except OSError as exc:
                    leave(path, "directory cannot be read: %s" % (exc.strerror or exc))
                continue
            if stat.S_ISLNK(st.st_mode):
                leave(path, "a symbolic link: not followed")
                continue
            if not stat.S_ISREG(st.st_mode):
                leave(path, "not a regular file")
                continue
            if len(files) >= max_files:
                leave(path, "over the %d-file limit" % max_files)
                continue
            room = max_bytes - state["total"]
            if st.st_size > room:
                leave(path, "%d bytes, over what is left of the %d-byte limit on output files" % (st.st_size, max_bytes))
                continue
            data = _read_regular(dir_fd, name, room)
            if data is None:
                leave(path, "not a regular file, or it grew past the size limit while read")
                continue
            state["total"] += len(data)
            files.append({"path": path, "media_type": media_type(name),
                          "content": base64.b64encode(data).decode("ascii")})


def _read_regular(dir_fd, name, room):
    """The bytes of regular file name (at most room), or None when it is
    no longer a regular file or holds more."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, got = [], 0
        while got <= room:
            chunk = os.read(fd, min(room + 1 - got, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return None if got > room else b"".join(chunks)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Running


def _user_traceback(exc):
    """The traceback of exc restricted to frames of the user's script."""
    te = traceback.TracebackException.from_exception(exc)
    seen = set()
    stack = [te]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        cur.stack = traceback.StackSummary.from_list(
            [f for f in cur.stack if f.filename == SCRIPT_NAME]
        )
        for nxt in (cur.__cause__, cur.__context__):
            if nxt is not None:
                stack.append(nxt)
    return "".join(te.format())


def _exc_message(exc):
    text = str(exc)
    name = type(exc).__name__
    return "%s: %s" % (name, text) if text else name


def _set_cpu_limit(timeout_ms):
    """Second fence behind the service's wall clock: a CPU-time limit a
    little above the script's own timeout."""
    if not timeout_ms:
        return
    seconds = int(math.ceil(timeout_ms / 1000.0)) + 1
    used = resource.getrusage(resource.RUSAGE_SELF)
    base = int(used.ru_utime + used.ru_stime) + 1
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    want = base + seconds
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (want, hard))
    except (ValueError, OSError):
        pass


def run_script(tree, source, limits, devnull, captures, args=None):
    """Run a validated script and build the reply fields (without id).
    captures are the (stdout, stderr) Captures, made ahead; args are main's
    keyword arguments, already checked against its signature."""
    cap = int(limits.get("max_output_bytes") or 1 << 20)
    linecache.cache[SCRIPT_NAME] = (len(source), None, source.splitlines(True), SCRIPT_NAME)
    code = compile(tree, SCRIPT_NAME, "exec", dont_inherit=True)
    # The script runs as a module of its own, registered as __main__ while
    # it runs: what pickles its functions by name (multiprocessing) looks
    # them up there.
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    namespace = module.__dict__

    sys.stdout.flush()
    sys.stderr.flush()
    if captures is not None:
        out, err = captures
        out.cap = err.cap = cap
        out.attach()
        err.attach()
    reply = {"result": None, "error": None}
    _set_cpu_limit(limits.get("timeout_ms"))
    harness_main = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, namespace)
        value = namespace["main"](**(args or {}))
        try:
            text = encode_result(value, cap)
        except InvalidResult as exc:
            reply["error"] = {
                "type": "invalid_result",
                "message": "Returned value is not valid JSON: %s" % exc,
            }
        except ResultTooLarge:
            reply["error"] = {
                "type": "output_limit",
                "message": "result is over the %d-byte limit" % cap,
            }
        else:
            if len(text) > cap:
                reply["error"] = {
                    "type": "output_limit",
                    "message": "result is %d bytes, over the %d-byte limit" % (len(text), cap),
                }
            else:
                reply["_result_text"] = text
        figures = collect_figures(limits)
        if figures:
            reply["figures"] = figures
    except MemoryError:
        reply["error"] = {"type": "memory_limit", "message": "script exceeded its memory limit"}
    except BaseException as exc:  # noqa: B902 - SystemExit and friends are script errors too
        reply["error"] = {
            "type": "runtime_error",
            "message": _exc_message(exc),
            "traceback": _user_traceback(exc),
        }
    finally:
        sys.modules["__main__"] = harness_main
        # The script may have put streams of its own in place.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: B902 - a broken stream must not lose the reply
                pass
    if captures is None:
        # A forked child's output went to pipes the service reads.
        reply["stdout"] = reply["stderr"] = ""
    else:
        reply["stdout"], reply["stdout_truncated"] = out.finish(devnull)
        reply["stderr"], reply["stderr_truncated"] = err.finish(devnull)
    return reply


# ---------------------------------------------------------------------------
# Figures

DEFAULT_MAX_FIGURES = 10
DEFAULT_MAX_FIGURE_PIXELS = 4096 * 4096
FONT_CACHE_DIR = "pyexec_fontcache"


def collect_figures(limits):
    """The pyplot figures still open, in the order of their numbers (the
    order they were made, unless the script numbered them itself), as PNG
    (base64) with their size in pixels; all of them are closed after.

    A figure larger than the pixel cap, or past the byte budget
    (max_output_bytes of base64 for all figures together) is not drawn: its
    entry says why instead. The size is checked from figsize and dpi before
    savefig, so a huge figure costs nothing. Past the count cap, one last
    entry says how many more there were."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    import base64
    max_count = int(limits.get("max_figures") or DEFAULT_MAX_FIGURES)
    max_pixels = int(limits.get("max_figure_pixels") or DEFAULT_MAX_FIGURE_PIXELS)
    budget = int(limits.get("max_output_bytes") or 1 << 20)
    figures = []
    try:
        numbers = plt.get_fignums()
        for n, num in enumerate(numbers):
            fig = plt.figure(num)
            w_in, h_in = fig.get_size_inches()
            dpi = fig.get_dpi()
            try:
                width, height = int(round(w_in * dpi)), int(round(h_in * dpi))
            except (ValueError, OverflowError):  # a NaN or infinite size
                width = height = 0
            entry = {"width": width, "height": height}
            if n >= max_count:
                more = len(numbers) - max_count
                figures.append({"width": 0, "height": 0, "omitted": "%d more figure%s over the limit of %d, not drawn" % (
                    more, "s" if more > 1 else "", max_count)})
                break
            if width <= 0 or height <= 0 or width * height > max_pixels:
                entry["omitted"] = "%d x %d pixels is over the %d-pixel limit: use a smaller figsize or dpi" % (
                    width, height, max_pixels)
            else:
                buf = io.BytesIO()
                # At figsize x dpi, the size just checked: a tight bounding
                # box could grow past it.
                fig.savefig(buf, format="png", dpi=dpi, bbox_inches=None)
                data = base64.b64encode(buf.getvalue()).decode("ascii")
                if len(data) > budget:
                    entry["omitted"] = "the PNG is over the %d bytes left for figures" % budget
                else:
                    budget -= len(data)
                    entry["png"] = data
            figures.append(entry)
    finally:
        plt.close("all")
    return figures


def font_cache_files():
    """The font list built at install time and where matplotlib looks for
    it (MPLCONFIGDIR, on the jail's tmpfs): (source, destination) pairs.
    Empty when matplotlib has loaded its list already, or when there is no
    such list or no MPLCONFIGDIR."""
    if "matplotlib.font_manager" in sys.modules:
        return []
    dest_dir = os.environ.get("MPLCONFIGDIR")
    if not dest_dir:
        return []
    for entry in sys.path:
        src_dir = os.path.join(entry, FONT_CACHE_DIR)
        try:
            names = os.listdir(src_dir)
        except OSError:
            continue
        return [(os.path.join(src_dir, name), os.path.join(dest_dir, name))
                for name in names if name.endswith(".json")]
    return []


def seed_font_cache():
    """Copy the font list into place (font_cache_files), so a script
    importing matplotlib does not scan the fonts again."""
    for src, dest in font_cache_files():
        if not os.path.exists(dest):
            try:
                with open(src, "rb") as f, open(dest, "wb") as out:
                    out.write(f.read())
            except OSError:
                pass


# ---------------------------------------------------------------------------
# Protocol


class Channel:
    """The private protocol descriptors."""

    def __init__(self, in_fd, out_fd, max_line=DEFAULT_MAX_LINE):
        self.reader = os.fdopen(in_fd, "rb", buffering=1 << 16) if in_fd is not None else None
        self.out_fd = out_fd
        self.max_line = max_line

    def read_line(self):
        """The next raw request line, or None at end of input."""
        line = self.reader.readline(self.max_line + 1)
        if not line:
            return None
        if len(line) > self.max_line:
            raise ValueError("request line over %d bytes" % self.max_line)
        return line

    def read(self):
        """The next request object, or None at end of input."""
        line = self.read_line()
        return None if line is None else json.loads(line)

    def write(self, obj, raw_result=None):
        """Send one reply line. raw_result, when given, is the result's
        already-encoded JSON text, spliced in rather than encoded twice."""
        rest = dict(obj)
        rest.pop("result", None)
        text = json.dumps(rest, ensure_ascii=True)
        if raw_result is not None or "result" in obj:
            head = '{"result": %s' % (raw_result if raw_result is not None else "null")
            text = head + (", " + text[1:] if rest else "}")
        write_all(self.out_fd, (text + "\n").encode("ascii"))


def read_small(path, limit=1 << 20):
    """The bytes of a small file (a /proc one), read without a file object."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while limit > 0:
            chunk = os.read(fd, min(limit, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            limit -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def warm_up(devnull):
    """Run a small script through the whole path once, so the script of the
    first request meets warm code (every worker serves exactly one)."""
    source = "def main():\n    print('warm')\n    return {'ok': [1, 2.5, None]}\n"
    captures = (Capture(1, 1024), Capture(2, 1024))
    dry_run(source, {"max_output_bytes": 1024}, devnull, captures)
    for c in captures:
        c.close()


def dry_run(source, limits, devnull, captures):
    """Validate and run a script of the harness's own, leaving no trace
    of it behind; returns its reply fields."""
    reply = run_script(validate(source, "standard", None), source, limits, devnull, captures)
    linecache.cache.pop(SCRIPT_NAME, None)
    return reply


def handle(req, channel, devnull, captures, policy_default="standard", workdir=WORKDIR, made=False):
    """Validate and run one request in workdir (made here unless made is
    set, with the request's input files in it), answering on channel with
    what the script left under output/ there."""
    req_id = req.get("id")
    limits = req.get("limits") or {}
    source = req.get("script")
    policy = limits.get("validation") or policy_default
    args = req.get("args")
    try:
        tree = validate(source, policy, limits.get("max_script_bytes"), args)
        write_files(workdir, req.get("files"), made)
    except (ValidationError, FileError) as exc:
        channel.write({
            "result": None, "id": req_id, "stdout": "", "stderr": "",
            "error": {"type": "validation_error", "message": str(exc)},
        })
        return
    os.chdir(workdir)
    limits = dict(limits, timeout_ms=req.get("timeout_ms"))
    if not made:
        seed_font_cache()
    reply = run_script(tree, source, limits, devnull, captures, args)
    try:
        reply["files"], reply["files_left_out"], reply["files_truncated"] = collect_output(
            workdir, int(limits.get("max_output_files") or 0), int(limits.get("max_output_files_bytes") or 0))
    except (OSError, MemoryError) as exc:
        reply["files"], reply["files_truncated"] = [], True
        reply["files_left_out"] = [{"path": OUTPUT_DIR, "reason": "output/ could not be read: %s" % type(exc).__name__}]
    raw = reply.pop("_result_text", None)
    reply["id"] = req_id
    channel.write(reply, raw_result=raw)


def serve(channel, devnull, policy_default="standard"):
    """Strict isolation: answer one request (if input does not end first)."""
    # Only here, where output is captured in memory: a fork child's streams
    # are plain pipes already, and every hook costs each child's fork.
    os.register_at_fork(after_in_child=_plain_streams_in_child)
    captures = (Capture(1, 1 << 20), Capture(2, 1 << 20))
    # The working directory and matplotlib's font list are put in place
    # while waiting, off the request's path.
    made = ready_workdir(WORKDIR)
    seed_font_cache()
    req = channel.read()
    if req is not None:
        handle(req, channel, devnull, captures, policy_default, made=made)


# ---------------------------------------------------------------------------
# System call filter


PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SOCK_FILTER_SIZE = 8
BPF_MAXINSNS = 4096
# seccomp(2)'s number on the machines the service compiles filters for.
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}


class SeccompProgram:
    """A filter the service compiled: blob is the program's struct
    sock_filter array (8 bytes an instruction, in native byte order).
    Checked and laid out in memory once; a fork child only installs it.
    Raises OSError if the program is malformed."""

    def __init__(self, blob):
        import ctypes
        count, rest = divmod(len(blob), SOCK_FILTER_SIZE)
        if rest or not 0 < count <= BPF_MAXINSNS:
            raise OSError(errno.EINVAL, "seccomp program of %d bytes is not 1 to %d instructions of %d bytes"
                          % (len(blob), BPF_MAXINSNS, SOCK_FILTER_SIZE))
        machine = os.uname().machine
        if machine not in SYS_SECCOMP:
            raise OSError(errno.ENOSYS, "no seccomp system call known on " + machine)

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.nr = SYS_SECCOMP[machine]
        self.program = ctypes.create_string_buffer(bytes(blob), len(blob))
        self.fprog = SockFprog(count, ctypes.addressof(self.program))

    def install(self):
        """Confine this process, all its threads and all it starts later.

        no_new_privs is set first: it lets an unprivileged process install a
        filter, and an exec can no longer gain privileges. The filter goes on
        every thread at once (TSYNC), so none started earlier, by a library
        say, escapes it. Raises OSError if the kernel refuses."""
        ctypes, libc = self.ctypes, self.libc
        ulong = ctypes.c_ulong
        if libc.prctl(PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "prctl(PR_SET_NO_NEW_PRIVS): " + os.strerror(err))
        ret = libc.syscall(ctypes.c_long(self.nr), ulong(SECCOMP_SET_MODE_FILTER),
                           ulong(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(self.fprog))
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, "seccomp(SECCOMP_SET_MODE_FILTER): " + os.strerror(err))
        if ret > 0:
            # TSYNC names the thread that could not take the filter.
            raise OSError(errno.EBUSY, "seccomp: thread %d cannot take the filter" % ret)


def install_seccomp(blob):
    """Check blob (see SeccompProgram) and install it on this process."""
    SeccompProgram(blob).install()


# ---------------------------------------------------------------------------
# Fork isolation


CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CHILD_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CLONE = {"x86_64": 56, "aarch64": 220}
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
# The service's word that a child is in its own cgroup.
PLACED_LINE = b'{"placed": true}\n'
# How long a child waits for its script before it warms numpy and pandas.
DATA_WARM_AFTER_S = 0.25
# The zygote's C library (native/: its memory mover and its fork loop), in
# the virtualenv's platlib.
ZYGOTE_LIB = "pyexec_zygote.so"
# Exit status of a child whose set-up failed before any script reached it.
CHILD_SETUP_FAILED = 71
# MAX_BINDS of native/child_setup.c.
CHILD_SETUP_MAX_BINDS = 32


def _data_steps():
    """A few common pandas operations, one step per yield: a table built,
    computed on, grouped and encoded. (Sorting and numpy's own reductions
    copied about 0.7 MB more per child for no gain on such a script.)"""
    import pandas as pd
    yield
    df = pd.DataFrame({"k": [i % 3 for i in range(30)], "v": [i * 0.5 for i in range(30)]})
    yield
    df["w"] = df["v"] * 2 + 1
    yield
    {str(k): float(v) for k, v in df.groupby("k")["w"].sum().items()}
    yield
    encode_result(df.groupby("k")["v"].agg(["sum", "mean"]).to_dict())


class Kernel:
    """The system calls the zygote and its children make through ctypes."""

    def __init__(self):
        import ctypes
        import platform
        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        # The clone is made with the GIL held (PyDLL), as os.fork does, and
        # framed by the interpreter's own before/after-fork steps.
        self.raw_syscall = ctypes.PyDLL(None, use_errno=True).syscall
        self.raw_syscall.restype = ctypes.c_long
        self.api = ctypes.pythonapi
        self.clone_nr = SYS_CLONE.get(platform.machine())
        if self.clone_nr is None:
            raise SystemExit("pyexec harness: no clone number known for %s" % platform.machine())
        self.last_cap = int(read_small("/proc/sys/kernel/cap_last_cap"))
        self._native = None

    def native(self):
        """The zygote's C library (native/, built into the virtualenv by
        make), or a string saying why it cannot be loaded."""
        if self._native is None:
            import sysconfig
            path = os.path.join(sysconfig.get_paths()["platlib"], ZYGOTE_LIB)
            try:
                # PyDLL: called with the GIL held, as the only thread.
                self._native = self.ctypes.PyDLL(path)
            except OSError as exc:
                self._native = "%s cannot be loaded: %s" % (path, exc)
        return self._native

    def fail(self, what):
        err = self.ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))

    def clone(self, flags):
        """fork() into new namespaces: 0 in the child, its pid in the parent."""
        ctypes = self.ctypes
        self.api.PyOS_BeforeFork()
        pid = self.raw_syscall(ctypes.c_long(self.clone_nr), ctypes.c_ulong(flags | signal.SIGCHLD),
                               ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
        if pid == 0:
            self.api.PyOS_AfterFork_Child()
            return 0
        err = ctypes.get_errno()
        self.api.PyOS_AfterFork_Parent()
        if pid < 0:
            raise OSError(err, "clone: %s" % os.strerror(err))
        return pid

    def mount(self, source, target, fstype, flags, data=None):
        enc = lambda v: None if v is None else v.encode()
        if self.libc.mount(enc(source), enc(target), enc(fstype), self.ctypes.c_ulong(flags), enc(data)) != 0:
            self.fail("mount %s" % target)

    def drop_bounding_set(self):
        """Empty the bounding set, which limits what an exec could ever
        grant. It takes CAP_SETPCAP but removes nothing the process holds
        now, and children inherit it: the zygote empties it once for all
        of them."""
        for cap in range(self.last_cap + 1):
            if self.libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                self.fail("drop capability %d from the bounding set" % cap)

    def drop_capabilities(self):
        """Leave no capability in any set: ambient, effective, permitted,
        inheritable, and check that none is left in those or in the
        bounding set (emptied by drop_bounding_set)."""
        ctypes = self.ctypes
        if self.libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
            self.fail("clear ambient capabilities")
        header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()
        if self.libc.capset(header, data) != 0:
            self.fail("capset")
        status = read_small("/proc/self/status").decode()
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") and int(value, 16) != 0:
                raise OSError("capabilities left after dropping them: %s" % line)

    def share_memory(self):
        """Move the process's anonymous memory into sealed memory files
        mapped privately at the same addresses (native/zygote_memory.c): a
        fork then copies no page table entry for it, and a child maps only
        the pages it touches. Returns the bytes of address space moved, or a
        string saying why none were."""
        lib = self.native()
        if isinstance(lib, str):
            return lib
        threads = [line for line in read_small("/proc/self/status").decode().splitlines()
                   if line.startswith("Threads:")]
        if threads != ["Threads:\t1"]:
            # Another thread could write between a page's copy and its
            # mapping, and the write would be lost.
            return "the process has more than one thread (%s)" % threads
        share = lib.pyexec_share_memory
        share.restype = self.ctypes.c_long
        moved = share()
        if moved == -errno.EFAULT:
            # Part of the address space may be unmapped: nothing can go on.
            os.write(2, b"pyexec harness: moving the zygote's memory failed half way\n")
            os._exit(CHILD_SETUP_FAILED)
        if moved < 0:
            return "reading the memory map: %s" % os.strerror(-moved)
        return moved

    def loopback_up(self):
        import fcntl
        import socket
        import struct
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            req = struct.pack("16sh", b"lo", 0)
            flags = struct.unpack("16sh", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
        finally:
            s.close()


class Zygote:
    """Fork isolation: one process per service, which never runs a script.

    On the service's word (a "fork" message on the control socket) it makes
    a child in new mount, PID, IPC, UTS and network namespaces. The child
    mounts a fresh /tmp, /dev/shm and /proc of its own, drops every
    capability, sets no_new_privs, installs the worker's seccomp filter and
    only then says hello on its own channel; everything it does after that
    is the script's and dies with its namespaces. Nothing is swept between
    scripts.

    The child's channel (a socket pair) and its stdout and stderr (pipes)
    go to the service with the reply to the fork message, over the control
    socket, which no child can reach: the zygote closes every descriptor of
    another child before the next clone, and each child closes the control
    socket before anything else. The service learns a child's host pid from
    the kernel (the credentials of its hello), never from this process.

    The zygote also reports how each child ended (waitpid's status), which
    the service uses to explain a child that died without answering."""

    def __init__(self, control_fd, devnull, seccomp_filter, tmp_mb, max_line=DEFAULT_MAX_LINE):
        if os.getpid() != 1:
            # Its children must die with it, as the jail's pid namespace
            # ensures when it is the namespace's init.
            raise SystemExit("pyexec harness: the zygote must be pid 1 of its own pid namespace")
        self.kernel = Kernel()
        self.kernel.drop_bounding_set()
        self.control = control_fd
        self.devnull = devnull
        self.filter = SeccompProgram(seccomp_filter)
        self.tmp_size = "size=%dm,mode=1777" % tmp_mb
        self.max_line = max_line
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.binds = self._tmp_binds("/tmp")
        self.links = self._tmp_links("/tmp")
        # matplotlib's font list, linked rather than copied into each /tmp.
        self.links.update((dest, src) for src, dest in font_cache_files() if dest.startswith("/tmp/"))

    # -- what a fresh /tmp must show again ---------------------------------

    def _tmp_binds(self, top):
        """The jail's own outermost mounts under top (a checkout in /tmp
        puts the virtualenv there), which a child binds again on its fresh
        /tmp."""
        binds = []
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in points:
            if point.startswith(top + "/") and not any(point.startswith(p + "/") for p in binds):
                binds.append(point)
        return binds

    def _tmp_links(self, top):
        """Symlinks under top as the jail starts, path to target."""
        links = {}
        skip = set(self.binds)
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
            for name in dirs + files:
                path = os.path.join(root, name)
                if os.path.islink(path):
                    links[path] = os.readlink(path)
        return links

    # -- the zygote's loop -------------------------------------------------

    def serve(self, versions):
        import socket
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # pandas sets much up on first use (imports, caches): done here once,
        # a child's first table finds it made instead of making it itself.
        if "numpy" in sys.modules and "pandas" in sys.modules:
            for _ in _data_steps():
                pass
        # Objects that exist now are shared with every child; freezing them
        # keeps a child's garbage collector from copying their pages. What
        # the imports left as garbage goes first, and the allocator gives
        # back what it can: every page the zygote holds is one more whose
        # mapping each fork copies, unless it was moved to a memory file.
        gc.collect()
        self.kernel.libc.malloc_trim(0)
        gc.freeze()
        shared = self.kernel.share_memory()
        # A child's ptrace or memory reads cannot reach the zygote. (Set
        # once its memory has moved: that reads /proc/self/pagemap, which
        # a process that is not dumpable cannot open. No child exists yet.)
        self.kernel.libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        lib = self.kernel.native()
        ready = dict(versions, ready=True, protocol=PROTOCOL, zygote=True,
                     fork_loop="python" if isinstance(lib, str) else "native")
        if isinstance(shared, int):
            ready["shared_memory"] = shared
        else:
            ready["shared_memory_error"] = shared
        self.send(ready)
        if not isinstance(lib, str):
            self.serve_native(lib, wake_r)
            return
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == wake_r:
                    while True:
                        try:
                            if not os.read(wake_r, 256):
                                break
                        except BlockingIOError:
                            break
                    self.reap()
                    continue
                try:
                    data = os.read(self.control, 65536)
                except InterruptedError:
                    continue
                if not data:
                    return  # the service is gone
                msg = json.loads(data)
                if "fork" in msg:
                    self.fork(msg["fork"], socket)

    def serve_native(self, lib, wake_r):
        """The loop in C (native/zygote_loop.c), which answers the same
        messages as serve's without running the interpreter between forks:
        what the interpreter writes, the next fork copies. It returns here
        only in a new child, or when the service is gone."""
        loop = fork_loop_of(lib)
        fds = (self.kernel.ctypes.c_int * 3)()
        mt_state = numpy_generator_state()
        # Python 3.13 and later need PyOS_BeforeFork before each clone
        # (see the loop's comment); earlier ones are spared its hooks.
        # A library built before the loop could set children up would
        # ignore the argument: the child then confines itself.
        # _held is what setup points into, kept alive as long as the loop runs.
        setup, _held = self.child_setup() if hasattr(lib, "pyexec_child_setup") else (None, None)
        got = loop(self.control, wake_r, CHILD_NAMESPACES, fds, mt_state, sys.version_info >= (3, 13), setup)
        if got == 0:
            # The loop has run the interpreter's after-fork steps and the
            # child's set-up.
            self.child(fds[0], fds[1], fds[2], reseed=mt_state is None, confined=setup is not None)
        if got < 0:
            raise OSError(-got, "the zygote's fork loop: %s" % os.strerror(-got))

    def send(self, obj, fds=()):
        """One message on the control socket, with descriptors if given."""
        import array
        import socket
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        s = socket.socket(fileno=self.control)
        try:
            s.sendmsg([json.dumps(obj).encode()], anc)
        finally:
            s.detach()

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            report = {"exited": pid, "signal": 0, "code": 0}
            if os.WIFSIGNALED(status):
                report["signal"] = os.WTERMSIG(status)
            elif os.WIFEXITED(status):
                report["code"] = os.WEXITSTATUS(status)
            self.send(report)

    def fork(self, tag, socket):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The service reads the child's pid from the credentials the kernel
        # attaches to its hello.
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        ours_fd, theirs_fd = ours.detach(), theirs.detach()
        try:
            pid = self.kernel.clone(CHILD_NAMESPACES)
        except OSError as exc:
            for fd in (ours_fd, theirs_fd, out_r, out_w, err_r, err_w):
                os.close(fd)
            self.send({"forked": tag, "error": str(exc)})
            return
        if pid == 0:
            self.child(theirs_fd, out_w, err_w)
        for fd in (theirs_fd, out_w, err_w):
            os.close(fd)
        try:
            self.send({"forked": tag, "pid": pid}, (ours_fd, out_r, err_r))
        finally:
            for fd in (ours_fd, out_r, err_r):
                os.close(fd)

    def child_setup(self):
        """What the C fork loop needs to set a child up as Child.confine
        does (native/child_setup.c): a ChildSetup, and the objects it
        points into, to be kept alive with it; None, None when the C set-up
        cannot hold the jail's mounts under /tmp (it takes at most
        CHILD_SETUP_MAX_BINDS)."""
        if len(self.binds) > CHILD_SETUP_MAX_BINDS:
            return None, None
        ct = self.kernel.ctypes

        class ChildSetup(ct.Structure):
            _fields_ = [("fail_code", ct.c_int), ("devnull", ct.c_int), ("tmp_options", ct.c_char_p),
                        ("binds", ct.POINTER(ct.c_char_p)), ("links", ct.POINTER(ct.c_char_p)),
                        ("filter", ct.c_void_p)]

        def strings(items):
            return (ct.c_char_p * (len(items) + 1))(*[i.encode() for i in items], None)
        binds = strings(self.binds)
        links = strings([part for pair in self.links.items() for part in pair])
        tmp = self.tmp_size.encode()
        setup = ChildSetup(CHILD_SETUP_FAILED, self.devnull, tmp, binds, links, ct.addressof(self.filter.fprog))
        return ct.byref(setup), (setup, binds, links, tmp)

    def child(self, channel_fd, out_fd, err_fd, reseed=True, confined=False):
        """Runs in a new child: serves one script and exits. reseed: give
        numpy's global generator a fresh seed, unless the fork loop gave it
        a fresh state (see numpy_generator_state). confined: the fork loop
        has done Child.confine's work."""
        code = CHILD_SETUP_FAILED
        try:
            # Every child would otherwise replay numpy's one random
            # sequence. (Python's own generator is reseeded by its at-fork
            # hook.) 128 bits from the kernel, through the legacy seeding's
            # init_by_array: a tenth of the cost of seed() with no argument,
            # about 0.6 ms of page copies in a child all the same.
            numpy = sys.modules.get("numpy")
            if reseed and numpy is not None:
                numpy.random.seed(numpy.frombuffer(os.urandom(16), dtype=numpy.uint32))
            code = Child(self, channel_fd, out_fd, err_fd).run(confined)
        finally:
            os._exit(code)


def fork_loop_of(lib):
    """The C fork loop of the zygote's library (native/zygote_loop.c), typed:
    loop(control, wake, clone_flags, child_fds, mt_state, before_fork, setup)."""
    import ctypes
    loop = lib.pyexec_fork_loop
    loop.restype = ctypes.c_long
    loop.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p,
                     ctypes.c_int, ctypes.c_void_p]
    return loop


def numpy_generator_state():
    """The address of the state of numpy's global generator (what
    numpy.random.rand draws from) if numpy is imported and it is the usual
    MT19937, else None: the fork loop writes a fresh state there before
    every clone. The layout the loop writes (624 words, then the position)
    is checked first against numpy's own state setter, so a numpy that
    lays it out otherwise is never written to. It is seeded here once,
    which also drops any normal deviate it kept for its next draw."""
    import ctypes
    import struct
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    try:
        bitgen = numpy.random.get_bit_generator()
        if type(bitgen) is not numpy.random.MT19937:
            return None
        addr = bitgen.ctypes.state_address
        key = numpy.arange(1, 625, dtype=numpy.uint32)
        bitgen.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 7}}
        expected = key.tobytes() + struct.pack("=i", 7)
        laid_out = ctypes.string_at(addr, len(expected)) == expected
        numpy.random.seed(numpy.frombuffer(os.urandom(16), dtype=numpy.uint32))
        return addr if laid_out else None
    except (AttributeError, TypeError, ValueError):  # a numpy without these
        return None


class Child:
    """One script's process, made by the zygote in namespaces of its own."""

    def __init__(self, zygote, channel_fd, out_fd, err_fd):
        self.z = zygote
        self.channel_fd = channel_fd
        self.out_fd, self.err_fd = out_fd, err_fd

    def run(self, confined=False):
        """Serves one script. confined: the fork loop has done confine's
        work (native/child_setup.c)."""
        z = self.z
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not confined:
            try:
                self.confine()
            except Exception as exc:  # noqa: B902 - any failure ends this child only
                # Until the pipes take over, stderr is the zygote's, which
                # the service logs.
                print("pyexec harness: child set-up failed: %s" % exc, file=sys.stderr, flush=True)
                return CHILD_SETUP_FAILED
        os.dup2(self.out_fd, 1)
        os.dup2(self.err_fd, 2)
        os.close(self.out_fd)
        os.close(self.err_fd)
        # Every write reaches the pipe at once: output printed before a
        # timeout or a kill is the service's to keep.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)
        # The hello's only content is its credentials, which the kernel
        # writes: this process's pid as the service sees it.
        write_all(self.channel_fd, b'{"hello": true}\n')
        # Placed in its own cgroup by the service: what it copies from now
        # on is charged to this script alone. Read byte-exact, so that no
        # part of the request is buffered out of sight of warm_data's poll.
        got = b""
        while len(got) < len(PLACED_LINE):
            chunk = os.read(self.channel_fd, len(PLACED_LINE) - len(got))
            if not chunk:
                return 0
            got += chunk
        if got != PLACED_LINE:
            return 0
        channel = Channel(self.channel_fd, self.channel_fd, z.max_line)
        unread = select.poll()
        unread.register(self.channel_fd, select.POLLIN)
        made = ready_workdir(WORKDIR)
        self.warm_path(unread, made)
        self.warm_data(unread)
        req = channel.read()
        if req is not None:
            handle(req, channel, z.devnull, None, made=made)
            # The service ends this process: waiting here keeps the
            # teardown off the answer's path.
            channel.read_line()
        return 0

    def confine(self):
        """Closes every descriptor but the child's own, starts a session,
        sets up its namespaces, drops every capability and installs the
        worker's filter. The C fork loop does the same in the child, without
        the interpreter's page copies (native/child_setup.c)."""
        z, k = self.z, self.z.kernel
        # First every descriptor but its own: the ends the service keeps,
        # the control socket, the zygote's signal pipe. Nothing of the
        # zygote's or of another child's stays open.
        low = 3
        for fd in sorted({self.channel_fd, self.out_fd, self.err_fd, z.devnull}):
            if fd >= low:
                os.closerange(low, fd)
                low = fd + 1
        os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        # A session of its own: kill(0) reaches the zygote's process group,
        # and the kernel lets a signal from a sibling pid namespace through
        # to the init of another (the next child).
        os.setsid()
        self.namespaces()
        try:
            write_all_path("/proc/self/oom_score_adj", b"1000")
        except OSError:
            pass
        k.drop_capabilities()
        z.filter.install()

    def namespaces(self):
        k, z = self.z.kernel, self.z
        k.mount(None, "/", None, MS_REC | MS_PRIVATE)
        # The jail's mounts under /tmp are held open in this namespace
        # before the fresh /tmp hides them, then bound again on top of it.
        held = [(point, os.open(point, os.O_PATH | os.O_CLOEXEC)) for point in z.binds]
        k.mount("none", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, z.tmp_size)
        for point, fd in held:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.makedirs(point, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(point), exist_ok=True)
                os.close(os.open(point, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
            k.mount("/proc/self/fd/%d" % fd, point, None, MS_BIND | MS_REC)
            os.close(fd)
        for path, target in z.links.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.symlink(target, path)
        k.mount("none", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, z.tmp_size)
        k.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
        k.loopback_up()
        os.chdir("/tmp")

    def warm_path(self, unread, made):
        """Walk the request path once: the request decoded, the script
        validated, run and encoded, the empty output directory read.
        Pages shared with the zygote are copied on first write (reference
        counts count as writes); doing it now keeps those copies off the
        script's latency. It stops between steps once the request is
        there: a child used at once (the pool is empty under steady
        traffic) would only delay its script by the steps the script makes
        anyway."""
        source = "import sys\ndef main():\n    print('x', end='')\n    return {'ok': [1, 2.5, None]}\n"
        err = os.dup(1)
        try:
            # Its output goes nowhere: the pipe is the script's alone.
            os.dup2(self.z.devnull, 1)
            # As the channel gives it: bytes, which json decodes first.
            json.loads(json.dumps({"id": "x", "script": source, "timeout_ms": 1000, "args": None,
                                   "limits": {"max_output_bytes": 1 << 20, "validation": "standard"}}).encode())
            if unread.poll(0):
                return
            tree = validate(source, "standard", None)
            if unread.poll(0):
                return
            reply = run_script(tree, source, {"max_output_bytes": 1 << 20, "timeout_ms": 1000}, self.z.devnull, None)
            if unread.poll(0):
                return
            json.dumps(dict(reply, id="x"))
            if made and not unread.poll(0):
                collect_output(WORKDIR, 0, 0)
        finally:
            os.dup2(err, 1)
            os.close(err)
            linecache.cache.pop(SCRIPT_NAME, None)

    def warm_data(self, unread):
        """Copy ahead the pages a small numpy/pandas script touches (about
        a thousand, several milliseconds), stopping as soon as the request
        is there; only for a child still waiting DATA_WARM_AFTER_S after it
        was placed. Under steady traffic a child is used sooner, and the
        copies would cost a CPU the next forks need; with pauses between
        requests it has long been idle, and its script starts warm. The
        service keeps a waiting child in the SCHED_IDLE class."""
        if "numpy" not in sys.modules or "pandas" not in sys.modules:
            return
        if unread.poll(int(DATA_WARM_AFTER_S * 1000)):
            return
        try:
            for _ in _data_steps():
                if unread.poll(0):
                    return
        except Exception:  # a warm-up must never fail the child
            pass


def write_all_path(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


DEFAULT_PRELOAD = "numpy,pandas"


def preload_list(value):
    """The modules to import before serving, from PYEXEC_PRELOAD: comma
    separated; unset means the default, "none" nothing."""
    if value is None:
        value = DEFAULT_PRELOAD
    names = [n.strip() for n in value.split(",") if n.strip()]
    return [] if names == ["none"] else names


def main():
    # Move the protocol off fds 0 and 1 before anything can print.
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")

    # There is no display (MPLBACKEND=Agg): plt.show() has nothing to do,
    # and the figures come back in the reply, so its warning is only noise.
    warnings.filterwarnings("ignore", message="FigureCanvasAgg is non-interactive")

    versions = {"python": sys.version.split()[0]}
    # matplotlib reads its font list on import: put it in place first.
    seed_font_cache()
    for name in preload_list(os.environ.get("PYEXEC_PRELOAD")):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: B902 - any failure to import ends the start-up
            print("pyexec harness: cannot import %s: %s" % (name, exc), file=sys.stderr)
            sys.stderr.flush()
            sys.exit(3)
    for name in ("numpy", "pandas"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")

    # The warm-up leaves fd 2 on /dev/null; the harness's own errors must
    # still reach the service's log of the worker.
    err_fd = os.dup(2)
    warm_up(devnull)
    os.dup2(err_fd, 2)
    os.close(err_fd)
    max_line = int(os.environ.get("PYEXEC_MAX_LINE", DEFAULT_MAX_LINE))
    if os.environ.get("PYEXEC_ROLE") == "zygote":
        # The control socket is descriptor 3; the seccomp filter every child
        # installs was compiled by the service. Each child's channel is its
        # own socket: the zygote's stdin and stdout carry nothing.
        os.close(in_fd)
        os.close(out_fd)
        with open(os.environ["PYEXEC_SECCOMP_FILTER"], "rb") as f:
            seccomp_filter = f.read()
        Zygote(3, devnull, seccomp_filter, int(os.environ.get("PYEXEC_TMP_MB", "64")), max_line).serve(versions)
        os._exit(0)
    channel = Channel(in_fd, out_fd, max_line)
    channel.write(dict({"ready": True, "protocol": PROTOCOL, "pid": os.getpid()}, **versions))
    serve(channel, devnull)
    # Leave at once: lingering threads or atexit hooks of the script must not
    # delay or alter the end of the worker.
    os._exit(0)


if __name__ == "__main__":
    main()
