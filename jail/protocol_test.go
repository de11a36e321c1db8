package jail

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

// pipeLines writes chunks into an io.Pipe from another goroutine, the way a
// harness writes into the worker's stdout, then closes it.
func pipeLines(chunks ...string) io.Reader {
	r, w := io.Pipe()
	go func() {
		for _, c := range chunks {
			if _, err := io.WriteString(w, c); err != nil {
				return
			}
		}
		w.Close()
	}()
	return r
}

func TestLineReader_ReadsLinesSplitAcrossWrites(t *testing.T) {
	lr := newLineReader(pipeLines(`{"a":`, `1}`+"\n"+`{"b"`, `:2}`+"\n"), 100)
	line, err := lr.next()
	require.NoError(t, err)
	assert.Equal(t, `{"a":1}`, string(line))
	line, err = lr.next()
	require.NoError(t, err)
	assert.Equal(t, `{"b":2}`, string(line))
	_, err = lr.next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestLineReader_LongLinesBeyondScannerLimit(t *testing.T) {
	long := strings.Repeat("x", 200*1024) // past bufio.Scanner's 64 KiB
	lr := newLineReader(pipeLines(long+"\n"), 300*1024)
	line, err := lr.next()
	require.NoError(t, err)
	assert.Len(t, line, len(long))
}

func TestLineReader_OverLongLineIsRefusedAndSkipped(t *testing.T) {
	long := strings.Repeat("y", 10_000)
	lr := newLineReader(pipeLines(long+"\n", "ok\n"), 1000)
	_, err := lr.next()
	require.ErrorIs(t, err, ErrLineTooLong)
	line, err := lr.next()
	require.NoError(t, err, "the reader must stay in step after a long line")
	assert.Equal(t, "ok", string(line))
}

func TestLineReader_EarlyEOF(t *testing.T) {
	lr := newLineReader(pipeLines(`{"result": 1`), 100)
	_, err := lr.next()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

	lr = newLineReader(pipeLines(), 100)
	_, err = lr.next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestLineReader_ExactlyMaxFits(t *testing.T) {
	lr := newLineReader(pipeLines(strings.Repeat("z", 100)+"\n"), 100)
	line, err := lr.next()
	require.NoError(t, err)
	assert.Len(t, line, 100)
	lr = newLineReader(pipeLines(strings.Repeat("z", 101)+"\n"), 100)
	_, err = lr.next()
	assert.ErrorIs(t, err, ErrLineTooLong)
}

func TestDecodeReady(t *testing.T) {
	m, err := decodeReady([]byte(`{"ready": true, "protocol": 1, "numpy": "2.4.6"}`))
	require.NoError(t, err)
	assert.Equal(t, "2.4.6", m.Numpy)

	for name, line := range map[string]string{
		"garbage":        `hello`,
		"not ready":      `{"ready": false, "protocol": 1}`,
		"other protocol": `{"ready": true, "protocol": 2}`,
		"empty":          ``,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeReady([]byte(line))
			assert.Error(t, err)
		})
	}
}

func TestDecodeReply(t *testing.T) {
	m, err := decodeReply([]byte(`{"result": {"x": [1, 2]}, "id": "r1", "stdout": "hi\n", "error": null}`), "r1")
	require.NoError(t, err)
	assert.JSONEq(t, `{"x": [1, 2]}`, string(m.Result))
	assert.Equal(t, "hi\n", m.Stdout)

	m, err = decodeReply([]byte(`{"result": null, "id": "r1", "error": {"type": "runtime_error", "message": "ValueError: boom"}}`), "r1")
	require.NoError(t, err)
	assert.Equal(t, "runtime_error", m.Error.Type)

	for name, line := range map[string]string{
		"garbage":          `{"result": `,
		"wrong id":         `{"result": 1, "id": "other", "error": null}`,
		"neither":          `{"id": "r1"}`,
		"not an object":    `[1, 2]`,
		"invalid json num": `{"result": 1e999x, "id": "r1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeReply([]byte(line), "r1")
			assert.Error(t, err)
		})
	}
}

func TestEncodeLine_IsOneLine(t *testing.T) {
	line, err := encodeLine(requestMsg{ID: "a", Script: "def main():\n    return '\\n'\n", TimeoutMS: 1000})
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(line), "\n"))
	assert.True(t, strings.HasSuffix(string(line), "\n"))
	var back requestMsg
	require.NoError(t, json.Unmarshal(line, &back))
	assert.Equal(t, "def main():\n    return '\\n'\n", back.Script)
}

func TestOwnCgroupPaths(t *testing.T) {
	data := []byte("9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/user.slice\n")
	p := ownCgroupPaths(data)
	assert.Equal(t, "/process_api/abc", p["memory"])
	assert.Equal(t, "/", p["pids"])
	assert.Equal(t, "/x", p["cpu"])
	assert.Equal(t, "/x", p["cpuacct"])
	assert.Equal(t, "/user.slice", p[""])
}

func TestCounter(t *testing.T) {
	data := []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
	assert.EqualValues(t, 1, counter(data, "oom_kill"))
	assert.EqualValues(t, 12, counter(data, "max"))
	assert.EqualValues(t, 0, counter(data, "absent"))
	assert.EqualValues(t, 0, counter(nil, "oom_kill"))
}

func TestOOMKills_ReadsTheCurrentCountEachTime(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/memory.events"
	require.NoError(t, os.WriteFile(path, []byte("oom 0\noom_kill 0\n"), 0o644))
	w := &workerCgroup{mode: CgroupV2, dirs: []string{dir}}
	w.openEvents()
	require.NotNil(t, w.events)
	assert.EqualValues(t, 0, w.oomKills())
	require.NoError(t, os.WriteFile(path, []byte("oom 3\noom_kill 2\n"), 0o644))
	assert.EqualValues(t, 2, w.oomKills(), "the kept-open file is read again from the start")
	require.NoError(t, w.events.Close())
	missing := &workerCgroup{mode: CgroupV2, dirs: []string{dir + "/missing"}}
	missing.openEvents()
	assert.EqualValues(t, 0, missing.oomKills())
	assert.EqualValues(t, 0, (&workerCgroup{mode: CgroupNone}).oomKills())
}

// fakeCgroup is a directory with the files giveBack and take read.
func fakeCgroup(t *testing.T, procs string, usage int64, oomKills int) *workerCgroup {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	write("cgroup.procs", procs)
	write("memory.current", strconv.FormatInt(usage, 10)+"\n")
	write("memory.events", fmt.Sprintf("oom 0\noom_kill %d\n", oomKills))
	w := &workerCgroup{mode: CgroupV2, dirs: []string{dir}}
	w.openEvents()
	t.Cleanup(w.closeEvents)
	return w
}

func TestCgroups_AnEmptiedCgroupIsTakenAgainWithItsOOMCountFromThen(t *testing.T) {
	c := &cgroups{mode: CgroupV2}
	w := fakeCgroup(t, "", 300<<10, 3)
	c.giveBack(w)
	got, err := c.take("unused")
	require.NoError(t, err)
	require.Same(t, w, got)
	assert.False(t, got.oomKilled(), "the kills of its earlier scripts are not this one's")
	require.NoError(t, os.WriteFile(filepath.Join(w.dirs[0], "memory.events"), []byte("oom 1\noom_kill 4\n"), 0o644))
	assert.True(t, got.oomKilled())
	assert.EqualValues(t, 1, got.oomKills())
}

func TestCgroups_OnlyAnEmptyAndUnchargedCgroupIsKept(t *testing.T) {
	for name, w := range map[string]*workerCgroup{
		"a process left":   fakeCgroup(t, "1\n", 0, 0),
		"too much charged": fakeCgroup(t, "", spareChargeMax+1, 0),
	} {
		assert.False(t, w.reusable(), name)
	}
	assert.True(t, fakeCgroup(t, "", spareChargeMax, 0).reusable())
	closed := &cgroups{mode: CgroupV2}
	closed.close()
	kept := fakeCgroup(t, "", 0, 0)
	kept.dirs = nil // nothing to remove
	closed.giveBack(kept)
	assert.Empty(t, closed.spare, "a closed set keeps nothing")
}

func TestCheckResult_RefusesWhatNoClientCouldRead(t *testing.T) {
	for raw, want := range map[string]pyexec.Code{
		`{"a": [1, "x"]}`:                   "",
		`"\ud83d\ude00"`:                    "",
		`"\\udc80"`:                         "", // an escaped backslash, then text
		`"\udc80"`:                          pyexec.CodeInvalidResult,
		`["ok", "\ud83d"]`:                  pyexec.CodeInvalidResult,
		"\"\xff\"":                          pyexec.CodeInvalidResult,
		`"` + strings.Repeat("y", 40) + `"`: pyexec.CodeOutputLimit,
	} {
		err := checkResult([]byte(raw), 32)
		if want == "" {
			assert.Nil(t, err, "%s", raw)
			continue
		}
		if assert.NotNil(t, err, "%s", raw) {
			assert.Equal(t, want, err.Code, "%s", raw)
		}
	}
}

func TestCapText_TheServiceCapsWhateverTheHarnessClaims(t *testing.T) {
	got, cut := capText("héllo", 2, false)
	assert.Equal(t, "h", got, "never half a character")
	assert.True(t, cut)
	got, cut = capText("short", 10, false)
	assert.Equal(t, "short", got)
	assert.False(t, cut)
	_, cut = capText("short", 10, true)
	assert.True(t, cut, "a script may only mark its own output cut")
}

func TestRequestLineCarriesArgsAsJSON(t *testing.T) {
	line, err := encodeLine(requestMsg{ID: "a", Script: "def main(city):\n    return city\n", TimeoutMS: 1000,
		Args: json.RawMessage("{\"city\": \"Oslo\",\n \"n\": 12345678901234567890}")})
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(line), "\n"), "one line, whatever the args' layout")
	var back map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(line, &back))
	assert.JSONEq(t, `{"city":"Oslo","n":12345678901234567890}`, string(back["args"]))
	assert.Contains(t, string(back["args"]), "12345678901234567890")

	line, err = encodeLine(requestMsg{ID: "a", Script: "s"})
	require.NoError(t, err)
	assert.NotContains(t, string(line), `"args"`, "no args: the harness calls main with none")
}

func TestCgroupFiles_WrittenAndReadWhole(t *testing.T) {
	// A cgroup file exists before it is written: writeFile creates none.
	path := filepath.Join(t.TempDir(), "cgroup.procs")
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	long := strings.Repeat("12345\n", 2000) // more than one read
	require.NoError(t, writeFile(path, long))
	got, err := readFile(path)
	require.NoError(t, err)
	assert.Equal(t, long, string(got))
	require.NoError(t, writeFile(path, "7\n"), "truncated, as a cgroup file is rewritten")
	got, err = readFile(path)
	require.NoError(t, err)
	assert.Equal(t, "7\n", string(got))

	missing := filepath.Join(t.TempDir(), "gone", "cpu.weight")
	err = writeFile(missing, "1")
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), missing)
	_, err = readFile(missing)
	assert.ErrorIs(t, err, os.ErrNotExist)
}
