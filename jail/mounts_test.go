package jail

import (
	"context"
	"debug/elf"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec/internal/testenv"
)

// programsProbe tries to run the usual tools, by name on PATH and at the
// usual places, and every file under every bin or sbin directory of the
// jail. It reports what ran and its own failures: a probe that cannot walk
// or cannot start the interpreter itself must not read as "nothing ran".
const programsProbe = `import os, shutil, subprocess, sys, time

TOOLS = ["sh", "bash", "dash", "busybox", "env", "perl", "gcc", "cc", "curl", "wget",
         "apt", "apt-get", "dpkg", "ls", "cat", "id", "nsjail", "pip", "pytest"]
PLACES = ["/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin"]

def main():
    errors = []
    interp = os.path.realpath(sys.executable)
    tried = {}
    for tool in TOOLS:
        tried.setdefault(tool, "by name on PATH")
        for place in PLACES:
            tried.setdefault(os.path.join(place, tool), "usual place")
    seen, dirs_walked, bin_dirs = set(), 0, []
    for root, dirs, files in os.walk("/", followlinks=True,
                                     onerror=lambda e: errors.append("walk: %s" % e)):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs_walked += 1
        if dirs_walked > 100000:
            errors.append("more than 100000 directories")
            break
        if os.path.basename(root) in ("bin", "sbin"):
            bin_dirs.append(root)
        if "bin" in root.split("/") or "sbin" in root.split("/"):
            for name in files:
                path = os.path.join(root, name)
                if os.path.isfile(path):
                    tried.setdefault(path, "bin directory")
    ran, refused = [], {}
    deadline = time.monotonic() + 60
    for path, how in sorted(tried.items()):
        if time.monotonic() > deadline:
            errors.append("out of time after %d of %d programs" % (len(ran) + len(refused), len(tried)))
            break
        try:
            r = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5)
            status = r.returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
        except OSError as e:
            refused[path] = e.strerror or type(e).__name__
            continue
        except Exception as e:
            errors.append("%s: %r" % (path, e))
            continue
        found = shutil.which(path) or path
        ran.append({"path": path, "how": how, "status": status,
                    "interpreter": os.path.realpath(found) == interp})
    return {"ran": ran, "refused": refused, "errors": errors, "interpreter": interp,
            "dirs_walked": dirs_walked, "bin_dirs": bin_dirs}
`

func TestJail_RunsNoProgramButTheInterpreter(t *testing.T) {
	s := newSpawner(t, Config{Validation: ValidationMinimal})
	w := spawn(t, s)
	resp := run(t, w, programsProbe, 90*time.Second)
	require.Nil(t, resp.Error, "the probe itself failed: %+v\n%s", resp.Error, resp.Stderr)
	var got struct {
		Ran []struct {
			Path        string `json:"path"`
			How         string `json:"how"`
			Status      any    `json:"status"`
			Interpreter bool   `json:"interpreter"`
		} `json:"ran"`
		Refused     map[string]string `json:"refused"`
		Errors      []string          `json:"errors"`
		Interpreter string            `json:"interpreter"`
		DirsWalked  int               `json:"dirs_walked"`
		BinDirs     []string          `json:"bin_dirs"`
	}
	require.NoError(t, json.Unmarshal(resp.Result, &got))
	assert.Empty(t, got.Errors, "the probe reported failures")
	// The walk reached the virtualenv's packages, and the way programs are
	// started works: the interpreter itself ran from /usr/bin.
	assert.Greater(t, got.DirsWalked, 200, "the walk saw too little of the jail")
	interpreterRan := false
	for _, r := range got.Ran {
		assert.True(t, r.Interpreter, "%s (%s) ran in the jail, exit status %v", r.Path, r.How, r.Status)
		interpreterRan = interpreterRan || r.Path == got.Interpreter
	}
	assert.True(t, interpreterRan, "the interpreter %s did not run: the probe cannot start programs, so it proves nothing", got.Interpreter)
	for _, tool := range []string{"sh", "bash", "perl", "gcc", "cc", "curl", "wget", "apt", "ls", "/bin/sh", "/usr/bin/perl", "/usr/bin/gcc"} {
		assert.Contains(t, got.Refused, tool, "%s was not refused", tool)
	}
	assert.Contains(t, got.BinDirs, "/usr/bin")
	t.Logf("%d programs refused, %d ran (the interpreter under its names), %d directories walked; bin directories: %v",
		len(got.Refused), len(got.Ran), got.DirsWalked, got.BinDirs)
}

// interpreterFacts is run on the host and in the jail: what the
// interpreter says about itself and which extension modules import.
const interpreterFacts = `import importlib, locale, os, site, sys
def facts():
    dynload = [p for p in sys.path if p.endswith("lib-dynload")][0]
    ok, failed = [], {}
    for name in sorted(os.listdir(dynload)):
        if not name.endswith(".so"):
            continue
        mod = name.split(".")[0]
        try:
            importlib.import_module(mod)
            ok.append(mod)
        except Exception as e:
            failed[mod] = repr(e)
    return {"executable": sys.executable, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
            "exec_prefix": sys.exec_prefix, "base_exec_prefix": sys.base_exec_prefix,
            "base_executable": sys._base_executable, "path": sys.path,
            "site_packages": site.getsitepackages(), "utf8_mode": sys.flags.utf8_mode,
            "fs_encoding": sys.getfilesystemencoding(), "ctype": locale.setlocale(locale.LC_CTYPE),
            "preferred_encoding": locale.getpreferredencoding(False),
            "dynload_ok": ok, "dynload_failed": failed}
`

const interpreterWorks = interpreterFacts + `
import bz2, ctypes, datetime, decimal, hashlib, lzma, os, sqlite3, ssl, subprocess, threading, zlib, zoneinfo
import numpy as np, pandas as pd

def main():
    out = {"facts": facts()}
    a = np.arange(16.0).reshape(4, 4) + np.eye(4)
    out["numpy"] = float(np.round(np.linalg.det(a), 6))
    df = pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]})
    out["pandas"] = df.groupby("k")["v"].sum().to_dict()
    out["sqlite"] = sqlite3.connect(":memory:").execute("select 6 * 7").fetchone()[0]
    out["sha256"] = hashlib.sha256(b"x").hexdigest()[:8]
    out["ssl"] = ssl.create_default_context().protocol.name
    out["lzma"] = len(lzma.decompress(lzma.compress(b"y" * 1000)))
    out["bz2"] = len(bz2.decompress(bz2.compress(b"y" * 1000)))
    out["zlib"] = len(zlib.decompress(zlib.compress(b"y" * 1000)))
    out["decimal"] = str(decimal.Decimal(1) / decimal.Decimal(7))[:6]
    # Time zones come from the tzdata package: the host's zoneinfo is not shown.
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    out["zoneinfo"] = str(datetime.datetime(2024, 7, 1, tzinfo=paris).utcoffset())
    out["pandas_tz"] = str(pd.Timestamp("2024-01-01 12:00", tz="America/New_York").tz_convert("UTC"))
    # glibc loads libgcc_s by name to unwind exiting or cancelled threads.
    out["libgcc_s"] = ctypes.CDLL("libgcc_s.so.1")._name
    results, before = [], threading.active_count()
    threads = [threading.Thread(target=lambda i=i: results.append(float(np.ones(1000).sum()) + i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    out["threads"] = [len(results), threading.active_count() - before]
    # No shell: os.system fails and subprocess finds no program but the
    # interpreter, which still runs as a child.
    out["system"] = os.system("true")
    try:
        subprocess.run(["sh", "-c", "true"])
        out["sh"] = "ran"
    except FileNotFoundError:
        out["sh"] = "FileNotFoundError"
    child = subprocess.run([sys.executable, "-c", "import sys, numpy; print(sys.prefix)"],
                           capture_output=True, text=True, timeout=30)
    out["child"] = [child.returncode, child.stdout.strip()]
    return out
`

func TestJail_InterpreterWorksFully(t *testing.T) {
	s := newSpawner(t, Config{Validation: ValidationMinimal})
	// The same facts on the host, in the jail's environment.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.PythonPath, "-I", "-B", "-c", interpreterFacts+"import json\nprint(json.dumps(facts()))\n")
	cmd.Env = s.env
	out, err := cmd.Output()
	require.NoError(t, err)
	var host map[string]any
	require.NoError(t, json.Unmarshal(out, &host))
	for _, mod := range []string{"_ssl", "_hashlib", "_sqlite3", "_ctypes", "_lzma", "_bz2", "_decimal", "readline", "_uuid"} {
		require.Contains(t, host["dynload_ok"], mod, "the host's interpreter cannot import %s: the comparison would prove little", mod)
	}

	w := spawn(t, s)
	resp := run(t, w, interpreterWorks, 60*time.Second)
	require.Nil(t, resp.Error, "%+v\n%s", resp.Error, resp.Stderr)
	var got map[string]any
	require.NoError(t, json.Unmarshal(resp.Result, &got))
	jail := got["facts"].(map[string]any)
	for key, want := range host {
		if key == "dynload_failed" {
			continue
		}
		assert.Equal(t, want, jail[key], "%s differs between the host and the jail (jail failures: %v)", key, jail["dynload_failed"])
	}
	assert.Equal(t, -49.0, got["numpy"])
	assert.Equal(t, map[string]any{"a": 4.0, "b": 2.0}, got["pandas"])
	assert.Equal(t, 42.0, got["sqlite"])
	assert.Equal(t, "2d711642", got["sha256"])
	assert.Equal(t, "PROTOCOL_TLS_CLIENT", got["ssl"])
	for _, key := range []string{"lzma", "bz2", "zlib"} {
		assert.Equal(t, 1000.0, got[key], key)
	}
	assert.Equal(t, "0.1428", got["decimal"])
	assert.Equal(t, "2:00:00", got["zoneinfo"])
	assert.Equal(t, "2024-01-01 17:00:00+00:00", got["pandas_tz"])
	assert.Equal(t, "libgcc_s.so.1", got["libgcc_s"])
	assert.Equal(t, []any{8.0, 0.0}, got["threads"], "8 threads ran and all ended")
	assert.NotEqual(t, 0.0, got["system"], "os.system found a shell")
	assert.Equal(t, "FileNotFoundError", got["sh"])
	assert.Equal(t, []any{0.0, host["prefix"]}, got["child"], "the interpreter runs as a child process")
}

func TestJail_ShowsOnlyPythonsFiles(t *testing.T) {
	s := newSpawner(t, Config{})
	plan := mustPlan(t, s)
	for _, tree := range plan.trees {
		assert.False(t, within("/usr/bin", tree) || tree == "/usr" || tree == "/lib" || tree == "/usr/lib",
			"%s is mounted whole", tree)
	}
	for _, f := range plan.files {
		base := filepath.Base(f.dst)
		assert.True(t, f.dst == f.src && strings.HasPrefix(base, "python") || strings.Contains(base, ".so"),
			"%s is neither the interpreter nor a shared library", f.dst)
	}
	nsjailBin := filepath.Dir(s.nsjail)
	if _, err := os.Stat(nsjailBin); err == nil && inAny(nsjailBin, plan.trees) {
		assert.Contains(t, plan.masks, nsjailBin, "nsjail's own directory is hidden")
	}
}

// hostPython is the interpreter for tests that only read the host's
// files: the configured one, or Debian's.
func hostPython(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PYEXEC_PYTHON"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no Python interpreter on this host")
	}
	return "/usr/bin/python3"
}

// jailResolve follows path through what the plan shows, as the kernel in
// the jail would, and returns the host file found there.
func jailResolve(p *mountPlan, path string) (string, bool) {
	links := map[string]string{}
	for _, l := range p.links {
		links[l[1]] = l[0]
	}
	rest := strings.Split(filepath.Clean(path), "/")
	cur := "/"
	for hops := 0; len(rest) > 0 && hops < 40; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		if target, ok := links[next]; ok {
			hops++
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(strings.Split(target, "/"), rest...)
			continue
		}
		for _, tree := range p.trees {
			if within(next, tree) {
				host, err := filepath.EvalSymlinks(filepath.Join(append([]string{next}, rest...)...))
				return host, err == nil
			}
		}
		cur = next
	}
	for _, f := range p.files {
		if f.dst == cur {
			return f.src, true
		}
	}
	return "", false
}

// The plan shows the interpreter at its path, and every library the
// host's own loader loads for it and for each shared object under the
// mounted trees (asked with ld.so --list) where the jail's loader, which
// has no ld.so.cache, will find it.
func TestPlanMounts_HoldsWhatTheHostLoaderLoads(t *testing.T) {
	python := hostPython(t)
	facts, err := probePython(python)
	require.NoError(t, err)
	plan, err := planMounts(facts, python)
	require.NoError(t, err)
	t.Logf("library scan took %v; %d trees, %d files, %d links, %d hidden", plan.scan, len(plan.trees), len(plan.files), len(plan.links), len(plan.masks))

	real, err := filepath.EvalSymlinks(python)
	require.NoError(t, err)
	got, ok := jailResolve(plan, python)
	assert.True(t, ok && got == real, "%s leads to %q in the jail, not to %s", python, got, real)
	exe, err := elf.Open(real)
	require.NoError(t, err)
	interp := ""
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			data := make([]byte, p.Filesz)
			_, err := p.ReadAt(data, 0)
			require.NoError(t, err)
			interp = strings.TrimRight(string(data), "\x00")
		}
	}
	exe.Close()
	require.NotEmpty(t, interp)
	// The kernel starts the loader by its literal path.
	interpReal, err := filepath.EvalSymlinks(interp)
	require.NoError(t, err)
	got, ok = jailResolve(plan, interp)
	assert.True(t, ok && got == interpReal, "%s leads to %q in the jail", interp, got)

	loaderFinds := func(name string) (string, bool) {
		for _, dir := range loaderDirs(interp, exe.Machine) {
			if host, ok := jailResolve(plan, filepath.Join(dir, name)); ok {
				return host, true
			}
		}
		return "", false
	}
	if gcc, err := filepath.EvalSymlinks("/lib/x86_64-linux-gnu/libgcc_s.so.1"); err == nil {
		got, _ := loaderFinds("libgcc_s.so.1")
		assert.Equal(t, gcc, got, "libgcc_s.so.1, which glibc loads to end threads")
	}

	objects := []string{real}
	for _, tree := range plan.trees {
		require.NoError(t, filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.Contains(d.Name(), ".so") && !inAny(path, plan.masks) {
				objects = append(objects, path)
			}
			return nil
		}))
	}
	require.Greater(t, len(objects), 50, "the trees hold the interpreter's extension modules")
	checked := 0
	for _, obj := range objects {
		out, err := exec.Command(interp, "--list", obj).Output()
		if err != nil {
			continue // not a shared object the loader can list
		}
		for _, line := range strings.Split(string(out), "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), " => ")
			if !ok || strings.HasPrefix(rest, "not found") {
				continue
			}
			host, _, _ := strings.Cut(rest, " (")
			want, err := filepath.EvalSymlinks(host)
			require.NoError(t, err)
			var got string
			if inAny(filepath.Clean(host), plan.trees) {
				got, _ = jailResolve(plan, host) // found through RUNPATH, inside a tree
			} else {
				got, _ = loaderFinds(name)
			}
			assert.Equal(t, want, got, "%s loads %s from %s; the jail's loader finds %q", obj, name, host, got)
			checked++
		}
	}
	assert.Greater(t, checked, 100)

	// Nothing else: each file is the interpreter or a shared object.
	for _, f := range plan.files {
		ef, err := elf.Open(f.src)
		if assert.NoError(t, err, "%s is not an ELF file", f.src) {
			assert.Contains(t, []elf.Type{elf.ET_DYN, elf.ET_EXEC}, ef.Type)
			ef.Close()
		}
		assert.True(t, f.src == real || strings.Contains(filepath.Base(f.dst), ".so"), "%s is neither the interpreter nor a library", f.dst)
	}
}

// A virtualenv reached through a linked directory: Python names its
// directories by the link, so the jail shows them, and the links from
// bin/python to the interpreter, under the link's path.
func TestPlanMounts_VirtualenvThroughALinkedDirectory(t *testing.T) {
	python := hostPython(t)
	facts, err := probePython(python)
	require.NoError(t, err)
	if facts.Prefix == facts.BasePrefix {
		t.Skip(python + " is not a virtualenv")
	}
	dir := openTempDir(t)
	linked := filepath.Join(dir, "project")
	require.NoError(t, os.Symlink(facts.Prefix, linked))
	python = filepath.Join(linked, "bin", "python")
	facts, err = probePython(python)
	require.NoError(t, err)
	require.Equal(t, linked, facts.Prefix)
	plan, err := planMounts(facts, python)
	require.NoError(t, err)
	assert.Contains(t, plan.trees, filepath.Join(linked, "pyvenv.cfg"))
	real, err := filepath.EvalSymlinks(python)
	require.NoError(t, err)
	got, ok := jailResolve(plan, python)
	assert.True(t, ok && got == real, "%s leads to %q in the jail, not to %s", python, got, real)
}

// A library that cannot be found is skipped, as the host's loader would
// fail on it too; the rest of the closure is still worked out.
func TestLibScanner_SkipsMissingLibraries(t *testing.T) {
	real, err := filepath.EvalSymlinks(hostPython(t))
	require.NoError(t, err)
	matches, _ := filepath.Glob("/usr/lib/python3*/lib-dynload/_bz2.*.so")
	if len(matches) == 0 {
		t.Skip("no _bz2 module from Debian here")
	}
	data, err := os.ReadFile(matches[0])
	require.NoError(t, err)
	require.Contains(t, string(data), "libbz2.so.1.0")
	dir := t.TempDir()
	copied := filepath.Join(dir, "_bz2.so")
	require.NoError(t, os.WriteFile(copied, []byte(strings.ReplaceAll(string(data), "libbz2.so.1.0", "libnx2.so.1.0")), 0o644))

	sc, err := newLibScanner(real, nil)
	require.NoError(t, err)
	masks, err := sc.scanTree(dir)
	require.NoError(t, err)
	assert.Empty(t, masks)
	libs := sc.closure()
	assert.True(t, sc.done[copied], "the copied module was read")
	names := map[string]bool{}
	for _, l := range libs {
		names[l.name] = true
	}
	assert.False(t, names["libnx2.so.1.0"])
	assert.False(t, names["libbz2.so.1.0"], "only the patched module needed libbz2")
	assert.True(t, names["libc.so.6"])
}

func TestFollowLinks(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	at := func(p string) string { return filepath.Join(dir, p) }
	require.NoError(t, os.MkdirAll(at("real/bin"), 0o755))
	require.NoError(t, os.WriteFile(at("real/bin/python3.11"), nil, 0o755))
	require.NoError(t, os.Symlink("python3.11", at("real/bin/python3")))
	require.NoError(t, os.Symlink("real", at("usr")))
	require.NoError(t, os.MkdirAll(at("venv/bin"), 0o755))
	require.NoError(t, os.Symlink(at("usr/bin/python3"), at("venv/bin/python")))

	real, jail, links, err := followLinks(at("venv/bin/../bin/python"), nil)
	require.NoError(t, err)
	assert.Equal(t, at("real/bin/python3.11"), real)
	assert.Equal(t, real, jail)
	assert.Equal(t, [][2]string{
		{at("usr/bin/python3"), at("venv/bin/python")},
		{"real", at("usr")},
		{"python3.11", at("real/bin/python3")},
	}, links)

	// A virtualenv reached through a linked directory: the jail shows its
	// trees at the link's path, so the links are made there too.
	require.NoError(t, os.Symlink("venv", at("project")))
	real, jail, links, err = followLinks(at("project/bin/python"), []string{at("project/lib")})
	require.NoError(t, err)
	assert.Equal(t, at("real/bin/python3.11"), real)
	assert.Equal(t, real, jail)
	assert.Equal(t, [][2]string{
		{at("usr/bin/python3"), at("project/bin/python")},
		{"real", at("usr")},
		{"python3.11", at("real/bin/python3")},
	}, links)
	// A link inside a tree is the tree's own.
	_, jail, links, err = followLinks(at("usr/bin/python3"), []string{at("real")})
	require.NoError(t, err)
	assert.Equal(t, at("real/bin/python3.11"), jail)
	assert.Equal(t, [][2]string{{"real", at("usr")}}, links)

	require.NoError(t, os.Symlink("loop", at("loop")))
	_, _, _, err = followLinks(at("loop"), nil)
	assert.ErrorContains(t, err, "too many levels")
}

// A virtualenv under /tmp (a checkout there) puts the links leading to the
// interpreter in the jail's /tmp, which every fork child mounts afresh: it
// makes them again, and a link a script replaced does not reach the next
// script.
func TestFork_LinksUnderTmpAreMadeAgain(t *testing.T) {
	python := testenv.Python(t)
	facts, err := probePython(python)
	require.NoError(t, err)
	require.NotEqual(t, facts.Prefix, facts.BasePrefix, "PYEXEC_PYTHON is a virtualenv")
	dir, err := os.MkdirTemp("/tmp", "pyexec-venv-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	venv := filepath.Join(dir, "venv")
	require.NoError(t, os.MkdirAll(filepath.Join(venv, "bin"), 0o755))
	cfg, err := os.ReadFile(filepath.Join(facts.Prefix, "pyvenv.cfg"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(venv, "pyvenv.cfg"), cfg, 0o644))
	require.NoError(t, os.Symlink(filepath.Join(facts.Prefix, "lib"), filepath.Join(venv, "lib")))
	require.NoError(t, os.Symlink(python, filepath.Join(venv, "bin", "python")))

	s, err := NewSpawner(withLimits(Config{PythonPath: filepath.Join(venv, "bin", "python"), Isolation: IsolationFork, Validation: ValidationMinimal}), zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	resp := run(t, fork(t, s), `import os, sys
def main():
    open("/tmp/evil", "w").write("print('evil')\n")
    os.unlink(sys.executable)
    os.symlink("/tmp/evil", sys.executable)
    return [sys.prefix, os.readlink(sys.executable)]
`, 10*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.JSONEq(t, `[`+strconv.Quote(venv)+`, "/tmp/evil"]`, string(resp.Result), "the script replaced the link")
	resp = run(t, fork(t, s), `import os, subprocess, sys
def main():
    child = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, timeout=30)
    return [os.readlink(sys.executable), child.stdout, os.path.exists("/tmp/evil")]
`, 30*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.JSONEq(t, `[`+strconv.Quote(python)+`, "42\n", false]`, string(resp.Result))
}
