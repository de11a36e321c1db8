package jail

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

// Every child is made by the one zygote, runs one script and sees nothing
// of the scripts before it, without anything being swept between them.
func TestFork_ChildrenShareAZygoteButNothingElse(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	var zygote int
	for i := 0; i < 3; i++ {
		c := fork(t, s)
		_, ppid, err := nsPIDs(c.pid)
		require.NoError(t, err)
		if i == 0 {
			zygote = ppid
		}
		assert.Equal(t, zygote, ppid, "child %d comes from the same zygote", i)
		resp := run(t, c, "import os\ndef main():\n    print('pid', os.getpid())\n    open('/tmp/mark', 'a').write('x')\n    return len(open('/tmp/mark').read())\n", 5*time.Second)
		require.Nil(t, resp.Error, "%+v", resp.Error)
		assert.Equal(t, "1", string(resp.Result), "child %d saw an earlier script's /tmp", i)
		assert.Equal(t, "pid 1\n", resp.Stdout, "each script is pid 1 of its own namespace")
		assert.Panics(t, func() {
			_, _ = c.Run(context.Background(), pyexec.Request{Script: "def main():\n    pass\n", Timeout: time.Second})
		},
			"a used child must never be given a second script")
	}
}

// The service reads a child's output itself: kept on a timeout, and a
// script that floods it is stopped at the cap.
func TestFork_OutputIsTheServicesOwnReading(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, MaxOutputBytes: 64 << 10})
	resp := run(t, fork(t, s), "import time, sys\ndef main():\n    print('before')\n    print('err', file=sys.stderr)\n    time.sleep(60)\n", 500*time.Millisecond)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeTimeout, resp.Error.Code)
	assert.Equal(t, "before\n", resp.Stdout)
	assert.Equal(t, "err\n", resp.Stderr)

	t0 := time.Now()
	resp = run(t, fork(t, s), "def main():\n    while True:\n        print('y' * 99)\n", 20*time.Second)
	require.NotNil(t, resp.Error)
	assert.Equal(t, pyexec.CodeOutputLimit, resp.Error.Code, resp.Error.Message)
	assert.Len(t, resp.Stdout, 64<<10)
	assert.True(t, resp.StdoutTruncated)
	assert.Less(t, time.Since(t0), 10*time.Second, "stopped at the cap, not at the timeout")

	resp = run(t, fork(t, s), "import os\ndef main():\n    os.write(1, b'raw ')\n    print('text')\n    return 1\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, "raw text\n", resp.Stdout)
	assert.False(t, resp.StdoutTruncated)
}

// A child that dies without answering is explained by how it ended, as
// its zygote saw it.
func TestFork_DeathsAreClassified(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	for _, tc := range []struct {
		script string
		code   pyexec.Code
		msg    string
	}{
		{"import os\ndef main():\n    print('bye')\n    os._exit(3)\n", pyexec.CodeSandbox, "exit status 3"},
		{"def main():\n    return len(bytearray(8 * 1024**3))\n", pyexec.CodeMemoryLimit, ""},
		{"def main():\n    x = []\n    while True:\n        x.append(b'y' * (1 << 20))\n", pyexec.CodeMemoryLimit, ""},
	} {
		resp := run(t, fork(t, s), tc.script, 20*time.Second)
		require.NotNil(t, resp.Error, tc.script)
		assert.Equal(t, tc.code, resp.Error.Code, "%s: %s", tc.script, resp.Error.Message)
		assert.Contains(t, resp.Error.Message, tc.msg)
	}
}

// Killing the zygote kills its children; the next Fork starts another.
func TestFork_ZygoteIsStartedAgain(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork})
	c := fork(t, s)
	_, zygote, err := nsPIDs(c.pid)
	require.NoError(t, err)
	s.zygote.mu.Lock()
	s.zygote.proc.kill()
	s.zygote.mu.Unlock()
	require.Eventually(t, func() bool { return !c.Alive() }, 5*time.Second, 10*time.Millisecond)
	_, err = c.Run(context.Background(), pyexec.Request{ID: "t", Script: "def main():\n    return 1\n", Timeout: time.Second})
	require.ErrorIs(t, err, pyexec.ErrNotRun)

	c = fork(t, s)
	_, again, err := nsPIDs(c.pid)
	require.NoError(t, err)
	assert.NotEqual(t, zygote, again)
	resp := run(t, c, "def main():\n    return 2\n", 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	assert.Equal(t, "2", string(resp.Result))
}

// A child runs with no capability and no way to gain one.
func TestFork_ChildHoldsNoCapability(t *testing.T) {
	s := newSpawner(t, Config{Isolation: IsolationFork, Validation: ValidationMinimal})
	resp := run(t, fork(t, s), `def main():
    caps = {}
    for line in open("/proc/self/status"):
        name, _, value = line.partition(":")
        if name.startswith("Cap") or name == "NoNewPrivs":
            caps[name] = value.strip()
    return caps
`, 5*time.Second)
	require.Nil(t, resp.Error, "%+v", resp.Error)
	for _, name := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		assert.Contains(t, string(resp.Result), `"`+name+`": "0000000000000000"`)
	}
	assert.Contains(t, string(resp.Result), `"NoNewPrivs": "1"`)
}
