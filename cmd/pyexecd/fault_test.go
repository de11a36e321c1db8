package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
)

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		text := string(data)
		fields := strings.Fields(text[strings.LastIndexByte(text, ')')+2:])
		if len(fields) > 1 {
			if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
				out = append(out, p)
			}
		}
	}
	return out
}

func TestE2E_WorkerKilledFromOutside(t *testing.T) { inEveryMode(t, testE2EWorkerKilledFromOutside) }

func testE2EWorkerKilledFromOutside(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, func(c *Config) { c.PoolSize = 1 })
	done := make(chan result, 1)
	go func() { done <- s.run("import time\ndef main():\n    time.sleep(20)\n", 25) }()
	require.Eventually(t, func() bool { st, _, _ := s.m.pool.Status(); return st.Busy == 1 }, 10*time.Second, 10*time.Millisecond)
	// The service runs in this process: its nsjail processes are our
	// children, and the jailed interpreters theirs.
	var victims []int
	for _, nsjail := range childrenOf(os.Getpid()) {
		victims = append(victims, childrenOf(nsjail)...)
	}
	require.NotEmpty(t, victims)
	for _, pid := range victims {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	select {
	case r := <-done:
		assert.Equal(t, "sandbox_error", errType(r))
	case <-time.After(15 * time.Second):
		t.Fatal("the request did not end when its worker was killed")
	}
	s.healthy()
}

// TestE2E_SIGTERM runs the real binary: SIGTERM lets the request in flight
// finish, then the service exits 0 and leaves no jailed process behind.
func TestE2E_SIGTERM(t *testing.T) {
	for _, iso := range isolations() {
		t.Run(iso.String(), func(t *testing.T) { testSIGTERM(t, iso) })
	}
}

func testSIGTERM(t *testing.T, iso jail.Isolation) {
	py := testenv.Python(t)
	bin := serviceBinary(t)
	port, err := freeTestPort()
	require.NoError(t, err)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "PYEXEC_HOST=127.0.0.1", "PYEXEC_PYTHON="+py,
		"PYEXEC_POOL_SIZE=2", "PYEXEC_LOG_LEVEL=warn", "PYEXEC_ISOLATION="+iso.String())
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	base := "http://127.0.0.1:" + port
	require.Eventually(t, func() bool {
		res, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}, 60*time.Second, 50*time.Millisecond)

	s := &service{t: t, base: base}
	inflight := make(chan result, 1)
	go func() {
		inflight <- s.run("import time\ndef main():\n    open('/tmp/running', 'w').close()\n    time.sleep(1)\n    return 'finished'\n", 10)
	}()
	// Every jailed process: nsjail, and under it the interpreters (strict)
	// or the zygote and its children (fork).
	var workers []int
	require.Eventually(t, func() bool {
		workers = descendantsOf(cmd.Process.Pid)
		return len(workers) >= 3
	}, 10*time.Second, 10*time.Millisecond)
	// The script marks its own /tmp once it runs; the test sees it through
	// the root of the process running it.
	require.Eventually(t, func() bool {
		for _, pid := range descendantsOf(cmd.Process.Pid) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/running", pid)); err == nil {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "the script did not start")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))

	r := <-inflight
	assert.JSONEq(t, `"finished"`, string(r.Body.Result), "the request in flight finishes")
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the service did not exit after SIGTERM")
	}
	for _, pid := range workers {
		assert.Eventually(t, func() bool { return !testenv.Alive(pid) }, 5*time.Second, 10*time.Millisecond, "worker %d left behind", pid)
	}
	_, err = http.Get(base + "/health")
	assert.Error(t, err, "nothing listens any more")
}

// descendantsOf lists every process under pid, children first.
func descendantsOf(pid int) []int {
	var out []int
	for _, c := range childrenOf(pid) {
		out = append(out, c)
		out = append(out, descendantsOf(c)...)
	}
	return out
}

// serviceBinary builds the service for tests that run it as its own
// process, or takes PYEXEC_TEST_BINARY, one built beforehand (where
// building is slow, as in an emulated VM).
func serviceBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("PYEXEC_TEST_BINARY"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "pyexecd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	return bin
}

func freeTestPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}
