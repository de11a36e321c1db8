package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/jail"
)

// forgeKit finds the ids the harness holds for the request it is running
// in the frames below main, and writes bytes on every descriptor a reply
// could go out on.
const forgeKit = `import base64, os, sys, json, time

def harness_locals():
    f = sys._getframe(1)
    while f is not None:
        yield f.f_locals
        f = f.f_back

def real_ids():
    msg_id, nonces = None, set()
    for names in harness_locals():
        req = names.get("req")
        if msg_id is None and isinstance(req, dict) and isinstance(req.get("id"), str):
            msg_id = req["id"]
        ready = names.get("ready")
        if isinstance(ready, dict) and isinstance(ready.get("nonce"), str):
            nonces.add(ready["nonce"])
        if isinstance(names.get("nonce"), str):
            nonces.add(names["nonce"])
    return msg_id, sorted(nonces)

def write_everywhere(data):
    for fd in range(3, 64):
        try:
            os.write(fd, data)
        except OSError:
            pass

`

// forger finds the ids the harness holds for the request it is running
// (the service's message id, and in fork isolation the nonce of the
// zygote's last ready line), writes every reply
// shape the protocol knows with them on every descriptor, the chosen one
// first, and then stays alive reading every descriptor, answering any
// script it reads there. It raises when it cannot find an id, so a probe
// that stops working fails the test instead of passing it.
const forger = forgeKit + `FIRST = %q
NO_NONCE_YET = "no nonce yet"

def shapes(msg_id, nonces):
    out = {"ok": {"id": msg_id, "result": "forged", "stdout": "forged", "stderr": "", "error": None}}
    for kind in ("validation_error", "runtime_error", "invalid_result", "timeout",
                 "memory_limit", "output_limit", "sandbox_error"):
        out[kind] = {"id": msg_id, "result": None, "stdout": "", "stderr": "",
                     "error": {"type": kind, "message": "forged"},
                     "user_code_ran": False, "duration_ms": 0.1}
    out["ready"] = {"ready": True, "protocol": 1, "pid": 1, "python": "3", "numpy": "1", "pandas": "2"}
    for i, n in enumerate(nonces):
        out["restored-%%d" %% i] = {"ready": True, "protocol": 1, "pid": 1, "zygote": True,
                                  "done": n, "nonce": "forged", "signal": 0, "exit_code": 0}
    return out

def answer_what_comes(seconds):
    for fd in range(0, 64):
        try:
            os.set_blocking(fd, False)
        except OSError:
            pass
    deadline = time.time() + seconds
    while time.time() < deadline:
        for fd in range(0, 64):
            try:
                data = os.read(fd, 1 << 20)
            except OSError:
                continue
            for line in data.splitlines():
                if b'"script"' in line:
                    req = json.loads(line)
                    stolen = {"id": req["id"], "result": "stolen: " + req["script"][:40],
                              "stdout": "", "stderr": "", "error": None}
                    write_everywhere(json.dumps(stolen).encode() + b"\n")
        time.sleep(0.001)

def main():
    msg_id, nonces = real_ids()
    if msg_id is None:
        raise RuntimeError("probe failed: the message id is not in the harness's frames")
    if FIRST.startswith("restored") and not nonces:
        # The first child of a jail comes before any nonce.
        return NO_NONCE_YET
    forged = shapes(msg_id, nonces)
    if FIRST not in forged:
        raise RuntimeError("probe failed: no shape %%s in %%s" %% (FIRST, sorted(forged)))
    lines = [forged.pop(FIRST)] + list(forged.values())
    write_everywhere(b"".join(json.dumps(m).encode() + b"\n" for m in lines))
    if os.fork() == 0:
        answer_what_comes(2.0)
        os._exit(0)
    answer_what_comes(2.0)
    return "late"
`

// TestAttacks_ForgedRepliesCannotServeTheNextScript: a script forges, with
// the real ids, every reply the protocol knows and stays reading the
// protocol; each of the next requests (more than the pool has workers)
// must still be answered by its own script, whatever the isolation and
// validation policy.
func TestAttacks_ForgedRepliesCannotServeTheNextScript(t *testing.T) {
	inEveryMode(t, func(t *testing.T, iso jail.Isolation) {
		for _, policy := range []jail.Validation{jail.ValidationStandard, jail.ValidationMinimal} {
			t.Run(policy.String(), func(t *testing.T) {
				const poolSize = 2
				s := startService(t, iso, func(c *Config) { c.PoolSize = poolSize; c.Validation = policy })
				first := []string{"validation_error", "ok", "ready"}
				if iso == jail.IsolationFork {
					first = append(first, "restored-0")
				}
				for _, shape := range first {
					forged := false
					for try := 0; try < 2*poolSize+1 && !forged; try++ {
						r := s.run(fmt.Sprintf(forger, shape), 10)
						if r.Body.Error != nil {
							require.NotContains(t, r.Body.Error.Message, "probe failed", "%s: %+v", shape, r.Body.Error)
						}
						forged = string(r.Body.Result) != `"no nonce yet"`
					}
					require.True(t, forged, "the %s forgery never found a nonce to forge with", shape)
					for i := 0; i <= poolSize; i++ {
						own := fmt.Sprintf("own-%s-%d", shape, i)
						r := s.run(fmt.Sprintf("def main():\n    return %q\n", own), 10)
						require.Nil(t, r.Body.Error, "after forging %s, request %d: %+v", shape, i, r.Body.Error)
						assert.JSONEq(t, fmt.Sprintf("%q", own), string(r.Body.Result),
							"after forging %s, request %d was answered by another script", shape, i)
						assert.False(t, strings.Contains(r.Body.Stdout, "forged"), "stdout %q", r.Body.Stdout)
					}
				}
			})
		}
	})
}

// fileForger answers its own request, with the real message id, by a reply
// that claims output files outside output/, twice the same path, content
// that is not base64, and a figure that is no PNG, then leaves before the
// harness can answer.
const fileForger = forgeKit + `def b64(text):
    return base64.b64encode(text.encode()).decode()

def main():
    msg_id, _ = real_ids()
    if msg_id is None:
        raise RuntimeError("probe failed: the message id is not in the harness's frames")
    reply = {"id": msg_id, "result": "forged", "stdout": "", "stderr": "", "error": None,
             "files": [{"path": "../../etc/passwd", "content": b64("root:x:0:0")},
                       {"path": "/etc/shadow", "content": b64("root:!")},
                       {"path": "ok.txt", "content": b64("fine")},
                       {"path": "ok.txt", "content": b64("twice")},
                       {"path": "raw.bin", "content": "not base64!"}],
             "files_left_out": [], "files_truncated": False,
             "figures": [{"png": b64("not a png"), "width": 1, "height": 1, "omitted": ""}]}
    write_everywhere(json.dumps(reply).encode() + b"\n")
    os._exit(0)
`

// TestAttacks_ForgedFilesAndFiguresAreChecked: a reply forged with the
// real id can only speak for its own script, and what it claims about
// files and figures is checked again by the service: no path outside
// output/, no path twice, no content that is not what it says, no figure
// that is not a PNG.
func TestAttacks_ForgedFilesAndFiguresAreChecked(t *testing.T) {
	inEveryMode(t, func(t *testing.T, iso jail.Isolation) {
		s := startService(t, iso, func(c *Config) { c.PoolSize = 1; c.Validation = jail.ValidationMinimal })
		r := s.run(fileForger, 10)
		require.Equal(t, 200, r.Status)
		if r.Body.Error != nil {
			require.NotContains(t, r.Body.Error.Message, "probe failed")
		}
		require.JSONEq(t, `"forged"`, string(r.Body.Result), "the forged reply is the answer: %+v", r.Body)
		returned := map[string]string{}
		for _, f := range r.Body.Files {
			returned[f.Path] = string(f.Content)
		}
		assert.Equal(t, map[string]string{"ok.txt": "fine"}, returned, "only a plain path under output/ is returned, once")
		left := map[string]bool{}
		for _, f := range r.Body.FilesLeftOut {
			left[f.Path] = true
		}
		for _, p := range []string{"../../etc/passwd", "/etc/shadow", "ok.txt", "raw.bin"} {
			// A path the service refuses is named quoted, as it came.
			assert.True(t, left[p] || left[strconv.Quote(p)], "%s is named as left out, not dropped silently", p)
		}
		require.Len(t, r.Body.Figures, 1)
		assert.Empty(t, r.Body.Figures[0].PNG, "a figure that is no PNG is not passed on")
		assert.NotEmpty(t, r.Body.Figures[0].Omitted)
		s.healthy()
	})
}
