package main

import (
	"archive/zip"
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
)

// healthPackages is what /health says of the interpreter.
func healthPackages(t *testing.T, s *service) (string, map[string]string) {
	t.Helper()
	res, err := http.Get(s.base + "/health")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	var h struct {
		Python   string            `json:"python"`
		Packages map[string]string `json:"packages"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&h))
	return h.Python, h.Packages
}

// pins reads name==version lines of a requirements file.
func pins(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, version, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=="); ok && !strings.HasPrefix(name, "#") {
			out[strings.ToLower(name)] = version
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// /health lists the interpreter's packages with their versions: every pin
// of the requirements is there, as pinned.
func TestE2E_HealthListsPackages(t *testing.T) {
	s := startService(t, jail.IsolationStrict, func(c *Config) { c.PoolSize = 1 })
	python, packages := healthPackages(t, s)
	assert.Regexp(t, `^3\.\d+\.\d+`, python)
	lower := map[string]string{}
	for name, version := range packages {
		lower[strings.ToLower(name)] = version
	}
	want := pins(t, "../../pyharness/requirements.txt")
	require.Contains(t, want, "matplotlib")
	for name, version := range want {
		assert.Equal(t, version, lower[name], "%s", name)
	}
}

// writeWheel writes a pure-Python wheel of one module, with a valid RECORD.
func writeWheel(t *testing.T, dir, module, version string) string {
	t.Helper()
	dist := module + "-" + version
	path := filepath.Join(dir, dist+"-py3-none-any.whl")
	f, err := os.Create(path)
	require.NoError(t, err)
	zw := zip.NewWriter(f)
	files := [][2]string{
		{module + "/__init__.py", fmt.Sprintf("__version__ = %q\nVALUE = {'from': 'the extra requirements'}\n", version)},
		{dist + ".dist-info/METADATA", fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", strings.ReplaceAll(module, "_", "-"), version)},
		{dist + ".dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: pyexec-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var record strings.Builder
	for _, file := range files {
		w, err := zw.Create(file[0])
		require.NoError(t, err)
		_, err = w.Write([]byte(file[1]))
		require.NoError(t, err)
		sum := sha256.Sum256([]byte(file[1]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", file[0], base64.RawURLEncoding.EncodeToString(sum[:]), len(file[1]))
	}
	fmt.Fprintf(&record, "%s.dist-info/RECORD,,\n", dist)
	w, err := zw.Create(dist + ".dist-info/RECORD")
	require.NoError(t, err)
	_, err = w.Write([]byte(record.String()))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
	return path
}

func TestE2E_ExtraPackagesImportInTheJail(t *testing.T) { inEveryMode(t, testE2EExtraPackages) }

// testE2EExtraPackages adds a package the documented way, a line in the
// extra requirements installed by the Makefile's venv step, and checks that
// a script imports it in the jail and /health lists it. So that it needs
// neither the network nor a second copy of numpy and pandas, the virtualenv
// it installs into is a fresh one whose import path also reaches the
// project's virtualenv (a .pth file); the wheel is built here.
func testE2EExtraPackages(t *testing.T, iso jail.Isolation) {
	base := testenv.Python(t)
	dir := t.TempDir()
	// The jail's user must reach the virtualenv.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	wheel := writeWheel(t, dir, "pyexec_extra_probe", "1.2.3")
	extra := filepath.Join(dir, "requirements-extra.txt")
	require.NoError(t, os.WriteFile(extra, []byte("# added by the deployment\n"+wheel+"\n"), 0o644))

	venv := filepath.Join(dir, "venv")
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		require.NoError(t, err, "%s %v: %s", name, args, out)
		return strings.TrimSpace(string(out))
	}
	run(base, "-m", "venv", "--without-pip", venv)
	py := filepath.Join(venv, "bin", "python")
	baseSite := run(base, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
	site := run(py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
	require.NoError(t, os.WriteFile(filepath.Join(site, "project_venv.pth"), []byte(baseSite+"\n"), 0o644))
	stamp := filepath.Join(venv, ".installed")
	require.NoError(t, os.WriteFile(stamp, nil, 0o644))
	// The Makefile's own step, on this virtualenv and extra file; -o keeps
	// make from rebuilding the base virtualenv it stands for.
	run("make", "-C", "../..", "--no-print-directory", "venv", "VENV="+venv, "EXTRA_REQS="+extra, "-o", stamp)
	require.FileExists(t, filepath.Join(venv, ".extra-installed"))

	s := startService(t, iso, func(c *Config) {
		c.Python = py
		c.PoolSize = 1
	})
	r := s.run("import pyexec_extra_probe\nimport pandas\n"+
		"def main():\n"+
		"    return {'value': pyexec_extra_probe.VALUE, 'version': pyexec_extra_probe.__version__,\n"+
		"            'file': pyexec_extra_probe.__file__.startswith("+fmt.Sprintf("%q", site)+")}\n", 0)
	require.Equal(t, 200, r.Status)
	require.Nil(t, r.Body.Error)
	assert.JSONEq(t, `{"value": {"from": "the extra requirements"}, "version": "1.2.3", "file": true}`, string(r.Body.Result))
	_, packages := healthPackages(t, s)
	assert.Equal(t, "1.2.3", packages["pyexec-extra-probe"])
	assert.Contains(t, packages, "numpy", "the project's packages are still there")
}
