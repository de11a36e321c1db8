package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/client"
	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
	"github.com/pyexec/pyexec/wire"
)

// service is a real pyexecd, with the real jail, on a loopback port.
type service struct {
	t    *testing.T
	m    *Main
	base string
}

// procsPerWorker is how many processes an idle worker has: nsjail and its
// interpreter, plus (fork isolation) the child forked ahead of a request.
func procsPerWorker(iso jail.Isolation) int {
	if iso == jail.IsolationFork {
		return 3
	}
	return 2
}

// isolations are the modes every end-to-end suite runs in.
func isolations() []jail.Isolation { return []jail.Isolation{jail.IsolationStrict, jail.IsolationFork} }

// inEveryMode runs a suite once per isolation mode, as subtests.
func inEveryMode(t *testing.T, suite func(t *testing.T, iso jail.Isolation)) {
	for _, iso := range isolations() {
		t.Run(iso.String(), func(t *testing.T) { suite(t, iso) })
	}
}

func startService(t *testing.T, iso jail.Isolation, tweak func(*Config)) *service {
	t.Helper()
	s := startUnowned(t, iso, tweak)
	t.Cleanup(func() { assert.NoError(t, s.m.Close()) })
	return s
}

// startUnowned starts a service that its test must close itself.
func startUnowned(t *testing.T, iso jail.Isolation, tweak func(*Config)) *service {
	t.Helper()
	py := testenv.Python(t)
	m := NewMain()
	m.Config.Isolation = iso
	m.Config.Python = py
	m.Config.Host = "127.0.0.1"
	m.Config.Port = "0"
	m.Config.PoolSize = 2
	m.Config.QueueTimeout = 60 * time.Second
	if tweak != nil {
		tweak(&m.Config)
	}
	m.Log = zap.NewNop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, m.Run(ctx))
	return &service{t: t, m: m, base: "http://" + m.Addr}
}

// result is one /execute answer as package client reads it. A refusal
// (overloaded, rate_limited...) comes as a Body whose Error is the refusal,
// so that every test reads the outcome in one place; Status tells them
// apart. The client itself refuses an answer that is not the envelope.
type result struct {
	Status     int
	RequestID  string
	RetryAfter time.Duration
	Body       *pyexec.Response
	Elapsed    time.Duration
}

func (s *service) client() *client.Client {
	return &client.Client{BaseURL: s.base, HTTP: &http.Client{Timeout: 5 * time.Minute}}
}

func (s *service) run(script string, timeout float64) result {
	s.t.Helper()
	return s.send(pyexec.Request{Script: script, Timeout: time.Duration(timeout * float64(time.Second))})
}

// send posts req and reads the answer as run does.
func (s *service) send(req pyexec.Request) result {
	s.t.Helper()
	start := time.Now()
	a, err := s.client().Execute(context.Background(), req)
	r := result{Elapsed: time.Since(start)}
	if err == nil {
		r.Status, r.RequestID, r.Body = a.Status, a.RequestID, a.Response
		require.NotEmpty(s.t, r.RequestID, "every answer carries X-Request-ID")
		return r
	}
	var pe *pyexec.Error
	var se *client.StatusError
	require.ErrorAs(s.t, err, &se, "no answer")
	require.NotErrorIs(s.t, err, client.ErrNotEnvelope)
	require.ErrorAs(s.t, err, &pe)
	r.Status, r.RequestID, r.RetryAfter = se.Status, se.RequestID, se.RetryAfter
	r.Body = &pyexec.Response{Error: pe}
	return r
}

// healthy checks that a normal request still succeeds.
func (s *service) healthy() {
	s.t.Helper()
	r := s.run("def main():\n    return {'ok': True}\n", 0)
	require.Equal(s.t, 200, r.Status)
	require.Nil(s.t, r.Body.Error, "normal request failed after the previous one")
	require.JSONEq(s.t, `{"ok": true}`, string(r.Body.Result))
}

func errType(r result) string {
	if r.Body.Error == nil {
		return ""
	}
	return string(r.Body.Error.Code)
}

func TestE2E_OriginalSpec(t *testing.T) { inEveryMode(t, testE2EOriginalSpec) }

func testE2EOriginalSpec(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, nil)

	t.Run("the README example works verbatim", func(t *testing.T) {
		r := s.run("def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}", 0)
		assert.Equal(t, 200, r.Status)
		assert.JSONEq(t, `{"message": "success"}`, string(r.Body.Result))
		assert.Equal(t, "hello from sandbox\n", r.Body.Stdout)
		assert.Nil(t, r.Body.Error)
	})
	t.Run("the request id given is the one answered", func(t *testing.T) {
		a, err := s.client().Execute(context.Background(), pyexec.Request{ID: "e2e-chosen-id", Script: "def main():\n    return 1\n"})
		require.NoError(t, err)
		assert.Equal(t, "e2e-chosen-id", a.RequestID)
		assert.JSONEq(t, "1", string(a.Result))
	})
	t.Run("missing main is a 400", func(t *testing.T) {
		r := s.run("def foo():\n    return {'x': 1}\n", 0)
		assert.Equal(t, 400, r.Status)
		assert.Equal(t, "validation_error", errType(r))
		assert.Equal(t, "script must define main()", r.Body.Error.Message)
		s.healthy()
	})
	for _, fn := range []string{"eval", "exec"} {
		t.Run(fn+" is a 400", func(t *testing.T) {
			r := s.run(fmt.Sprintf("def main():\n    return %s('1')\n", fn), 0)
			assert.Equal(t, 400, r.Status)
			assert.Equal(t, "validation_error", errType(r))
			assert.Contains(t, r.Body.Error.Message, "use of "+fn+"() is not allowed")
			s.healthy()
		})
	}
	t.Run("os.system is blocked", func(t *testing.T) {
		r := s.run("import os\ndef main(): os.system('rm -rf /')\n", 0)
		assert.Equal(t, 400, r.Status)
		assert.Contains(t, r.Body.Error.Message, "os.system")
	})
	t.Run("syntax error names its line", func(t *testing.T) {
		r := s.run("def main():\n    return (\n", 0)
		assert.Equal(t, 400, r.Status)
		assert.Contains(t, r.Body.Error.Message, "syntax error at line")
	})
	t.Run("script over 200 KiB is a 400", func(t *testing.T) {
		r := s.run("def main():\n    return 1\n#"+strings.Repeat("x", 200*1024), 0)
		assert.Equal(t, 400, r.Status)
		assert.Equal(t, "validation_error", errType(r))
		assert.Contains(t, r.Body.Error.Message, "over the 204800-byte limit")
		s.healthy()
	})
	t.Run("main returning JSON gives the result", func(t *testing.T) {
		r := s.run("def main():\n    return {'a': [1, 2.5, None, True, 'x'], 'b': {'c': -1}}\n", 0)
		assert.Equal(t, 200, r.Status)
		assert.JSONEq(t, `{"a": [1, 2.5, null, true, "x"], "b": {"c": -1}}`, string(r.Body.Result))
	})
	t.Run("main raising keeps the message and earlier stdout", func(t *testing.T) {
		r := s.run("def main():\n    print('step 1')\n    raise ValueError('boom')\n", 0)
		assert.Equal(t, 200, r.Status)
		assert.Equal(t, "runtime_error", errType(r))
		assert.Equal(t, "ValueError: boom", r.Body.Error.Message)
		assert.Equal(t, "step 1\n", r.Body.Stdout)
		assert.Contains(t, r.Body.Error.Traceback, `File "<script>", line 3, in main`)
		assert.NotContains(t, r.Body.Error.Traceback, "harness")
		assert.Nil(t, r.Body.Result, "the client takes only a null result with an error")
		s.healthy()
	})
	t.Run("printing is captured", func(t *testing.T) {
		r := s.run("import sys\ndef main():\n    print('a')\n    print('b', file=sys.stderr)\n    print('c')\n", 0)
		assert.Equal(t, "a\nc\n", r.Body.Stdout)
		assert.Equal(t, "b\n", r.Body.Stderr)
		assert.Equal(t, "null", string(r.Body.Result))
	})
	t.Run("set is invalid JSON", func(t *testing.T) {
		r := s.run("def main():\n    return set([1, 2])\n", 0)
		assert.Equal(t, "invalid_result", errType(r))
		assert.True(t, strings.HasPrefix(r.Body.Error.Message, "Returned value is not valid JSON"))
	})
}

func TestE2E_Limits(t *testing.T) { inEveryMode(t, testE2ELimits) }

func testE2ELimits(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, nil)

	for name, script := range map[string]string{
		"infinite loop": "def main():\n    while True:\n        pass\n",
		"long sleep":    "import time\ndef main():\n    time.sleep(10**6)\n",
	} {
		t.Run(name+" times out within the limit", func(t *testing.T) {
			r := s.run(script, 1)
			assert.Equal(t, 200, r.Status)
			assert.Equal(t, "timeout", errType(r))
			assert.Contains(t, r.Body.Error.Message, "1s time limit")
			// Functional bound, not a speed target: the script must not
			// outlive its limit by more than the kill and the round trip.
			assert.Less(t, r.Elapsed, 6*time.Second)
			s.healthy()
		})
	}
	t.Run("8 GiB allocation is memory_limit", func(t *testing.T) {
		r := s.run("def main():\n    b = bytearray(8 * 1024**3)\n    return len(b)\n", 10)
		assert.Equal(t, "memory_limit", errType(r))
		s.healthy()
	})
	t.Run("gradual growth is memory_limit", func(t *testing.T) {
		r := s.run("def main():\n    x = []\n    while True:\n        x.append(bytearray(10**7))\n", 20)
		assert.Equal(t, "memory_limit", errType(r))
		s.healthy()
	})
	t.Run("fork bomb is contained", func(t *testing.T) {
		r := s.run("import os\ndef main():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n", 2)
		assert.Contains(t, []string{"timeout", "sandbox_error", "runtime_error"}, errType(r))
		s.healthy()
		// Nothing of the bomb survives: the workers' cgroups hold only the
		// warm pool now.
		if _, ok := s.m.spawner.Processes(); !ok {
			t.Log("no cgroups on this host: the jailed processes cannot be counted")
			return
		}
		procs := func() int { n, _ := s.m.spawner.Processes(); return n }
		require.Eventually(t, func() bool { return procs() <= procsPerWorker(iso)*s.m.Config.PoolSize }, 10*time.Second, 100*time.Millisecond,
			"jailed processes left: %d", procs())
	})
	t.Run("100 MB of output is truncated and flagged", func(t *testing.T) {
		r := s.run("import sys\ndef main():\n    for i in range(100):\n        sys.stdout.write(str(i % 10) * (1 << 20))\n    return 'done'\n", 20)
		require.Equal(t, 200, r.Status)
		if iso == jail.IsolationFork {
			// The service reads a child's output itself and stops the
			// script as soon as it passes the cap.
			require.NotNil(t, r.Body.Error)
			assert.Equal(t, "output_limit", errType(r))
			assert.Equal(t, fmt.Sprintf("script printed more than %d bytes to stdout and was stopped", s.m.Config.MaxOutputBytes), r.Body.Error.Message)
			assert.Empty(t, r.Body.Result)
			assert.Less(t, r.Elapsed, 10*time.Second, "stopped at the cap, not at the timeout")
		} else {
			// Strict cuts the output and still returns the result.
			assert.Nil(t, r.Body.Error)
			assert.JSONEq(t, `"done"`, string(r.Body.Result))
		}
		// The first MaxOutputBytes, as printed: the first MiB is all zeros.
		require.Equal(t, 1<<20, s.m.Config.MaxOutputBytes)
		assert.Equal(t, strings.Repeat("0", 1<<20), r.Body.Stdout)
		assert.True(t, r.Body.StdoutTruncated)
		s.healthy()
	})
	t.Run("result over the cap is output_limit", func(t *testing.T) {
		r := s.run("def main():\n    return 'y' * (2 << 20)\n", 10)
		assert.Equal(t, "output_limit", errType(r))
		s.healthy()
	})
}

func TestE2E_Isolation(t *testing.T) { inEveryMode(t, testE2EIsolation) }

func testE2EIsolation(t *testing.T, iso jail.Isolation) {
	t.Setenv("PYEXEC_TEST_SECRET", "s3cr3t-value")
	s := startService(t, iso, nil)

	t.Run("no network: a listener on host loopback gets no connection", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		accepted := make(chan struct{}, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
		r := s.run(fmt.Sprintf("import socket\ndef main():\n    s = socket.socket()\n    s.settimeout(2)\n    try:\n        s.connect(('127.0.0.1', %d))\n        return 'connected'\n    except OSError as e:\n        return 'refused: ' + type(e).__name__\n", port), 5)
		require.Nil(t, r.Body.Error)
		assert.Contains(t, string(r.Body.Result), "refused")
		select {
		case <-accepted:
			t.Fatal("the host listener accepted a connection from the jail")
		case <-time.After(200 * time.Millisecond):
		}
		r = s.run("import socket\ndef main():\n    try:\n        socket.getaddrinfo('pypi.org', 443)\n        return 'resolved'\n    except OSError as e:\n        return 'no dns'\n", 5)
		assert.JSONEq(t, `"no dns"`, string(r.Body.Result))
	})
	t.Run("file system outside /tmp is read-only and host files are invisible", func(t *testing.T) {
		wd, err := os.Getwd()
		require.NoError(t, err)
		canary := filepath.Join(wd, "canary-"+fmt.Sprint(time.Now().UnixNano()))
		require.NoError(t, os.WriteFile(canary, []byte("host secret"), 0o644))
		defer os.Remove(canary)
		// Host directories that must be absent, except the one the
		// checkout itself lives under (its prefix is mounted at its path).
		hostDirs := []string{"/etc/passwd", "/etc/shadow"}
		for _, d := range []string{"/root", "/home", "/var", "/srv", "/mnt"} {
			if topDir(s.m.Config.Python) != d[1:] {
				hostDirs = append(hostDirs, d)
			}
		}
		paths, err := json.Marshal(append([]string{canary}, hostDirs...))
		require.NoError(t, err)
		script := fmt.Sprintf(`import os
def main():
    out = {}
    for path in %s:
        out[path] = os.path.exists(path)
    for path in ["/usr/evil", "/evil", %q]:
        try:
            open(path, "w").write("x")
            out["wrote " + path] = True
        except OSError:
            out["wrote " + path] = False
    open("/tmp/ok", "w").write("fine")
    out["tmp"] = open("/tmp/ok").read()
    return out
`, paths, filepath.Join(filepath.Dir(s.m.Config.Python), "evil"))
		r := s.run(script, 5)
		require.Nil(t, r.Body.Error, "%+v", r.Body.Error)
		var out map[string]any
		require.NoError(t, json.Unmarshal(r.Body.Result, &out))
		for k, v := range out {
			if k == "tmp" {
				assert.Equal(t, "fine", v)
				continue
			}
			assert.Equal(t, false, v, k)
		}
	})
	t.Run("the service's environment is invisible", func(t *testing.T) {
		r := s.run("import os\ndef main():\n    return dict(os.environ)\n", 0)
		require.Nil(t, r.Body.Error)
		assert.NotContains(t, string(r.Body.Result), "s3cr3t-value")
		assert.NotContains(t, string(r.Body.Result), "PYEXEC_TEST_SECRET")
	})
	t.Run("scripts run as nobody without capabilities", func(t *testing.T) {
		r := s.run("import os\ndef main():\n    caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')]\n    return [os.getuid(), os.getgid(), caps[0].split()[1]]\n", 0)
		require.Nil(t, r.Body.Error)
		assert.JSONEq(t, `[65534, 65534, "0000000000000000"]`, string(r.Body.Result))
	})
	t.Run("numpy and pandas work", func(t *testing.T) {
		r := s.run("import numpy as np\nimport pandas as pd\ndef main():\n    return {'sum': pd.Series([1, 2, 3]).sum(), 'arr': np.arange(3) * 2, 'mean': np.float64(1.5)}\n", 0)
		require.Nil(t, r.Body.Error)
		assert.JSONEq(t, `{"sum": 6, "arr": [0, 2, 4], "mean": 1.5}`, string(r.Body.Result))
	})
	t.Run("NaN is invalid_result", func(t *testing.T) {
		r := s.run("def main():\n    return float('nan')\n", 0)
		assert.Equal(t, "invalid_result", errType(r))
		s.healthy()
	})
	t.Run("fake protocol lines and fd writes stay in stdout", func(t *testing.T) {
		script := "import os, sys\ndef main():\n    print('{\"result\": 666, \"error\": null, \"id\": \"x\"}')\n    sys.stdout.flush()\n    os.write(1, b'raw write\\n')\n    return 42\n"
		r := s.run(script, 0)
		require.Nil(t, r.Body.Error)
		assert.JSONEq(t, `42`, string(r.Body.Result))
		assert.Equal(t, "{\"result\": 666, \"error\": null, \"id\": \"x\"}\nraw write\n", r.Body.Stdout)
	})
}

func TestE2E_ConcurrentRequestsGetTheirOwnAnswers(t *testing.T) {
	inEveryMode(t, testE2EConcurrentRequestsGetTheirOwnAnswers)
}

func testE2EConcurrentRequestsGetTheirOwnAnswers(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, func(c *Config) { c.PoolSize = 4 })
	const n = 20
	var wg sync.WaitGroup
	got := make([]result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got[i] = s.run(fmt.Sprintf("import os\ndef main():\n    print('req %d')\n    open('/tmp/mine', 'a').write('%d')\n    return {'i': %d, 'tmp': open('/tmp/mine').read()}\n", i, i, i), 10)
		}(i)
	}
	wg.Wait()
	for i, r := range got {
		require.Nil(t, r.Body.Error, "request %d: %+v", i, r.Body.Error)
		assert.JSONEq(t, fmt.Sprintf(`{"i": %d, "tmp": "%d"}`, i, i), string(r.Body.Result), "request %d saw another's data", i)
		assert.Equal(t, fmt.Sprintf("req %d\n", i), r.Body.Stdout)
	}
	s.healthy()
}

func TestE2E_HealthReportsPoolAndLimits(t *testing.T) {
	inEveryMode(t, testE2EHealthReportsPoolAndLimits)
}

func testE2EHealthReportsPoolAndLimits(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, nil)
	res, err := http.Get(s.base + "/health")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, 200, res.StatusCode)
	var h struct {
		Status string `json:"status"`
		Pool   struct {
			Size int `json:"size"`
		} `json:"pool"`
		Limits struct {
			Cgroup   string `json:"cgroup"`
			MemoryMB int    `json:"memory_mb"`
		} `json:"limits"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&h))
	assert.Equal(t, "ok", h.Status)
	assert.Equal(t, 2, h.Pool.Size)
	assert.Contains(t, []string{"v1", "v2", "none"}, h.Limits.Cgroup)
	assert.Equal(t, 512, h.Limits.MemoryMB)
}

func TestE2E_ClientDisconnectKillsTheWorker(t *testing.T) {
	inEveryMode(t, testE2EClientDisconnectKillsTheWorker)
}

func testE2EClientDisconnectKillsTheWorker(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, func(c *Config) { c.PoolSize = 1 })
	before := s.m.pool
	require.NotNil(t, before)
	data, err := json.Marshal(wire.Request{Script: "import time\ndef main():\n    time.sleep(25)\n", Timeout: 30})
	require.NoError(t, err)
	conn, err := net.Dial("tcp", s.m.Addr)
	require.NoError(t, err)
	fmt.Fprintf(conn, "POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(data), data)
	require.Eventually(t, func() bool { st, _, _ := s.m.pool.Status(); return st.Busy == 1 }, 10*time.Second, 10*time.Millisecond)
	conn.Close()
	// The worker must be killed and replaced long before the script's 25 s.
	require.Eventually(t, func() bool { st, _, _ := s.m.pool.Status(); return st.Busy == 0 && st.Idle == 1 }, 10*time.Second, 20*time.Millisecond)
	s.healthy()
}

func TestE2E_OverloadedWhenEveryWorkerIsBusy(t *testing.T) {
	inEveryMode(t, testE2EOverloadedWhenEveryWorkerIsBusy)
}

func testE2EOverloadedWhenEveryWorkerIsBusy(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, func(c *Config) { c.PoolSize = 1; c.QueueTimeout = 300 * time.Millisecond })
	done := make(chan result, 1)
	go func() { done <- s.run("import time\ndef main():\n    time.sleep(3)\n    return 1\n", 10) }()
	require.Eventually(t, func() bool { st, _, _ := s.m.pool.Status(); return st.Busy == 1 }, 10*time.Second, 10*time.Millisecond)
	r := s.run("def main():\n    return 2\n", 0)
	assert.Equal(t, 503, r.Status)
	assert.Equal(t, "overloaded", errType(r))
	assert.Positive(t, r.RetryAfter, "Retry-After")
	first := <-done
	assert.JSONEq(t, "1", string(first.Body.Result))
}

func TestE2E_MinimalValidationStillJailed(t *testing.T) {
	inEveryMode(t, testE2EMinimalValidationStillJailed)
}

func testE2EMinimalValidationStillJailed(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, func(c *Config) { c.Validation = jail.ValidationMinimal })
	script := `import subprocess, sys
def main():
    subprocess.run([sys.executable, "-c", "print('from-child')"])
    try:
        open("/etc/pwned", "w")
    except OSError as e:
        print("denied", type(e).__name__)
    return 1
`
	r := s.run(script, 10)
	require.Nil(t, r.Body.Error, "%+v", r.Body.Error)
	assert.Contains(t, r.Body.Stdout, "from-child", "child process output is captured at the fd level")
	assert.Contains(t, r.Body.Stdout, "denied")
	_, err := os.Stat("/etc/pwned")
	assert.True(t, os.IsNotExist(err))
	r = s.run("def main():\n    return eval('1')\n", 0)
	assert.Equal(t, 400, r.Status)
}

func TestE2E_ColdModeServes(t *testing.T) {
	s := startService(t, jail.IsolationStrict, func(c *Config) { c.PoolSize = 0 })
	s.healthy()
}

func scrapeMetrics(t *testing.T, base string) string {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(data)
}

// metricValue finds the value of one exposition line (name with labels).
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return -1
}

func TestE2E_MetricsFollowTheService(t *testing.T) {
	s := startService(t, jail.IsolationStrict, nil)
	before := scrapeMetrics(t, s.base)
	assert.EqualValues(t, 2, metricValue(before, "pyexec_pool_size"))
	spawned := metricValue(before, "pyexec_spawns_total")
	require.GreaterOrEqual(t, spawned, 1.0)
	s.healthy()
	s.run("def main():\n    raise ValueError('x')\n", 0)
	require.Eventually(t, func() bool {
		return metricValue(scrapeMetrics(t, s.base), "pyexec_spawns_total") >= spawned+2
	}, 30*time.Second, 100*time.Millisecond, "used workers are replaced and counted")
	after := scrapeMetrics(t, s.base)
	assert.EqualValues(t, 1, metricValue(after, `pyexec_requests_total{outcome="ok",status="200"}`))
	assert.EqualValues(t, 1, metricValue(after, `pyexec_requests_total{outcome="runtime_error",status="200"}`))
	assert.GreaterOrEqual(t, metricValue(after, `pyexec_spawn_duration_seconds_count{result="ok"}`), spawned+2)
	assert.GreaterOrEqual(t, metricValue(after, `pyexec_pool_workers{state="idle"}`), 0.0)
	assert.Contains(t, after, "pyexec_go_goroutines")
	for _, line := range strings.Split(after, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			assert.True(t, strings.HasPrefix(line, "pyexec_"), "metric not named pyexec_*: %s", line)
		}
	}
}

func TestE2E_ProfilerOnlyOnItsLoopbackListener(t *testing.T) {
	s := startService(t, jail.IsolationStrict, func(c *Config) { c.DebugAddr = "127.0.0.1:0" })
	require.NotEmpty(t, s.m.DebugAddr)
	res, err := http.Get("http://" + s.m.DebugAddr + "/debug/pprof/cmdline")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.NotEmpty(t, body, "the profiler answers on its own listener")
	res, err = http.Get(s.base + "/debug/pprof/cmdline")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusNotFound, res.StatusCode, "the service's port serves no profiler")
	s.healthy()
}

func TestE2E_ProfilerIsOffByDefault(t *testing.T) {
	s := startService(t, jail.IsolationStrict, nil)
	assert.Empty(t, s.m.DebugAddr)
	assert.Nil(t, s.m.debug)
}

// startToClose starts a service whose test closes it itself, with a
// 5 s shutdown timeout.
func startToClose(t *testing.T, poolSize int) *service {
	t.Helper()
	return startUnowned(t, jail.IsolationStrict, func(c *Config) {
		c.PoolSize, c.ShutdownTimeout = poolSize, 5*time.Second
	})
}

func TestE2E_ShutdownFinishesInFlightAndLeavesNothing(t *testing.T) {
	s := startToClose(t, 2)
	m, sp := s.m, s.m.spawner

	inflight := make(chan result, 1)
	go func() { inflight <- s.run("import time\ndef main():\n    time.sleep(1)\n    return 'finished'\n", 10) }()
	require.Eventually(t, func() bool { st, _, _ := m.pool.Status(); return st.Busy == 1 }, 10*time.Second, 10*time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	require.Eventually(t, func() bool { return m.draining.Load() }, time.Second, time.Millisecond)
	resp, err := m.Execute(context.Background(), pyexec.Request{Script: "def main():\n    return 1\n", Timeout: time.Second})
	assert.Nil(t, resp)
	assert.Equal(t, pyexec.CodeOverloaded, pyexec.ErrorCode(err), "new work is refused while draining")

	r := <-inflight
	assert.JSONEq(t, `"finished"`, string(r.Body.Result), "the request in flight finishes")
	require.NoError(t, <-closed)
	n, ok := sp.Processes()
	if ok {
		assert.Zero(t, n, "no jailed process is left")
	}
}

// A connection that has not sent a byte yet (Go's HTTP client dials such
// spare connections) counts as busy to fasthttp, which would hold the
// shutdown for its whole timeout and keep serving the connection after it.
// Close ends such a connection at once; one still sending its request is
// cut when the timeout ends, so nothing is served once Close returns.
func TestE2E_ShutdownEndsConnectionsWithoutARequest(t *testing.T) {
	s := startToClose(t, 1)
	m := s.m
	s.healthy()

	open := func() int32 { return m.app.Server().GetOpenConnectionsCount() }
	before := open()
	silent, err := net.Dial("tcp", m.Addr)
	require.NoError(t, err)
	defer silent.Close()
	partial, err := net.Dial("tcp", m.Addr)
	require.NoError(t, err)
	defer partial.Close()
	_, err = fmt.Fprint(partial, "POST /execute HTTP/1.1\r\nHost: localhost\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return open() == before+2 }, 10*time.Second, 5*time.Millisecond,
		"the service has taken both connections")

	closed := make(chan error, 1)
	started := time.Now()
	go func() { closed <- m.Close() }()
	requireClosedByService(t, silent)
	require.NoError(t, partial.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err = partial.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the connection sending a request is left to finish it")
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the unfinished request's timeout: the partial connection did not hold it", err)
	default:
	}
	require.NoError(t, <-closed)
	// A platform gives a stopping instance the shutdown timeout and then
	// kills it: the partial request must not hold Close beyond it.
	assert.Less(t, time.Since(started), m.Config.ShutdownTimeout+500*time.Millisecond,
		"Close returns within the shutdown timeout")
	requireClosedByService(t, partial)
}

// A service that cannot listen (the port is taken) fails its Run, and Close
// then tears down what Run had started.
func TestE2E_CloseAfterAFailedListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	_, port, err := net.SplitHostPort(taken.Addr().String())
	require.NoError(t, err)
	m := NewMain()
	m.Config.Python = testenv.Python(t)
	m.Config.Host, m.Config.Port, m.Config.PoolSize = "127.0.0.1", port, 1
	m.Log = zap.NewNop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = m.Run(ctx)
	require.ErrorContains(t, err, "listen")
	sp := m.spawner
	require.NotPanics(t, func() { assert.NoError(t, m.Close()) })
	if n, ok := sp.Processes(); ok {
		assert.Zero(t, n, "no jailed process is left")
	}
	assert.NoError(t, m.Close(), "Close may be called again")
}

// requireClosedByService reads conn until the service closes it, with a
// FIN or, if it had not read everything sent, a reset.
func requireClosedByService(t *testing.T, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	_, err := io.Copy(io.Discard, conn)
	if !errors.Is(err, syscall.ECONNRESET) {
		require.NoError(t, err, "the service closes the connection (io.Copy stops at EOF)")
	}
}

func TestLogger_WritesCloudLoggingJSON(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(zapcore.InfoLevel, zapcore.AddSync(&buf))
	log.Debug("hidden")
	log.Warn("hello", zap.String("request_id", "r1"))
	log.Error("bad")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "debug is below the level")
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &line))
	assert.Equal(t, "WARNING", line["severity"])
	assert.Equal(t, "hello", line["message"])
	assert.Equal(t, "r1", line["request_id"])
	assert.Contains(t, line, "time")
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &line))
	assert.Equal(t, "ERROR", line["severity"])
}
