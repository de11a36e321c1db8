package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/jail"
)

// forgeKit finds the message id the harness holds for the request it is
// running in the frames below main, and writes bytes on every descriptor a
// reply could go out on.
const forgeKit = `import array, base64, errno, json, os, signal, socket, stat, struct, sys, time

def harness_locals():
    f = sys._getframe(1)
    while f is not None:
        yield f.f_locals
        f = f.f_back

def real_id():
    for names in harness_locals():
        req = names.get("req")
        if isinstance(req, dict) and isinstance(req.get("id"), str):
            return req["id"]
    return None

def write_everywhere(data):
    for fd in range(3, 64):
        try:
            os.write(fd, data)
        except OSError:
            pass

`

// forger holds the real message id and the harness's own channel object,
// both read from its memory, and forges with them:
//
//   - "before": a reply with the real id, before the harness answers (its
//     own answer, which it may give), carrying what it found;
//   - "hello": a child's hello, with its own credentials and descriptors,
//     as its first line;
//   - "after": nothing before; it wraps the channel's write, so that right
//     after the harness's real answer it forges again.
//
// Whatever the shape, it also sends, on every socket it holds (its channel
// among them in fork isolation) and on a socket pair of its own, a message
// whose SCM_CREDENTIALS name another pid, which the kernel must refuse
// (the same message with its own pid passes, so the refusal is about the
// pid); it passes descriptors named TOKEN (a memfd, a file in /tmp, a
// socket) with every forged line on its channel; after the answer it
// writes replies with the real id and hellos everywhere, and a process it
// leaves behind reads every descriptor for 2 seconds, answering any script
// it reads there. It raises when it cannot find the id or the channel, so
// a probe that stops working fails the test instead of passing it.
const forger = forgeKit + `FIRST = "@FIRST@"
TOKEN = "@TOKEN@"
HELLO = b'{"hello": true}\n'

def channel():
    for names in harness_locals():
        ch = names.get("channel")
        if hasattr(ch, "out_fd") and hasattr(ch, "write"):
            return ch
    raise RuntimeError("probe failed: the harness's channel is not in its frames")

def sockets():
    found = []
    for fd in range(0, 65):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                found.append(fd)
        except OSError:
            pass
    return found

def credentials(pid):
    return [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("3i", pid, os.getuid(), os.getgid()))]

def claim_other_pids(fds):
    helper = os.fork()
    if helper == 0:
        time.sleep(30)
        os._exit(0)
    got = {}
    try:
        a, b = socket.socketpair()
        a.sendmsg([b"x"], credentials(os.getpid()))
        if b.recv(1) != b"x":
            raise RuntimeError("probe failed: a message with its own credentials did not pass")
        for fd in fds + [a.fileno()]:
            s = socket.socket(fileno=fd)
            try:
                for pid in (helper, 4242):
                    key = "fd %d pid %d" % (fd, pid)
                    try:
                        s.sendmsg([HELLO], credentials(pid))
                        got[key] = "sent"
                    except OSError as exc:
                        got[key] = errno.errorcode.get(exc.errno, str(exc.errno))
            finally:
                s.detach()
        a.close()
        b.close()
    finally:
        os.kill(helper, signal.SIGKILL)
        os.waitpid(helper, 0)
    return got

def descriptors():
    name = "pyexec-passed-" + TOKEN
    fds = [os.open("/tmp/" + name, os.O_RDWR | os.O_CREAT, 0o600), socket.socket().detach()]
    try:
        fds.append(os.memfd_create(name))
    except OSError:
        pass
    return fds

def send(fd, data, rights):
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.write(fd, data)
        return
    s = socket.socket(fileno=fd)
    try:
        s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", rights))])
    finally:
        s.detach()

def reply(msg_id, result):
    return (json.dumps({"id": msg_id, "result": result, "stdout": "forged", "stderr": "", "error": None}) + "\n").encode()

def steal(seconds):
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
                    write_everywhere(reply(req["id"], "stolen: " + req["script"][:40]))
        time.sleep(0.001)

def forge_after(ch, msg_id, rights):
    real_write = ch.write
    def write(*args, **kwargs):
        real_write(*args, **kwargs)
        for shape in (reply(msg_id, "forged after"), HELLO):
            send(ch.out_fd, shape, rights)
            write_everywhere(shape)
        if os.fork() == 0:
            steal(2.0)
            os._exit(0)
    ch.write = write

def main():
    msg_id = real_id()
    if msg_id is None:
        raise RuntimeError("probe failed: the message id is not in the harness's frames")
    ch = channel()
    held = sockets()
    found = {"forged": FIRST == "before", "channel": ch.out_fd, "sockets": held,
             "credentials": claim_other_pids(held)}
    rights = descriptors()
    if FIRST == "before":
        send(ch.out_fd, reply(msg_id, found), rights)
    elif FIRST == "hello":
        send(ch.out_fd, HELLO, rights)
    elif FIRST != "after":
        raise RuntimeError("probe failed: no shape " + FIRST)
    forge_after(ch, msg_id, rights)
    return found
`

// TestAttacks_ForgedRepliesCannotServeTheNextScript: a script forges, with
// the real message id and on the harness's own channel, a reply before its
// answer, a hello, and replies and hellos after its answer, passes
// descriptors with them, claims other pids in its credentials, and leaves
// a process reading every descriptor. Its forgery may decide its own
// answer only: the kernel refuses the credentials, the service keeps none
// of the descriptors, and each of the next requests (more than the pool
// has workers) is answered by its own script, whatever the isolation and
// validation policy.
func TestAttacks_ForgedRepliesCannotServeTheNextScript(t *testing.T) {
	inEveryMode(t, func(t *testing.T, iso jail.Isolation) {
		for _, policy := range []jail.Validation{jail.ValidationStandard, jail.ValidationMinimal} {
			t.Run(policy.String(), func(t *testing.T) {
				const poolSize = 2
				s := startService(t, iso, func(c *Config) { c.PoolSize = poolSize; c.Validation = policy })
				for _, shape := range []string{"before", "hello", "after"} {
					token := fmt.Sprintf("%s-%s-%s-%d", iso, policy, shape, time.Now().UnixNano())
					r := s.run(strings.NewReplacer("@FIRST@", shape, "@TOKEN@", token).Replace(forger), 10)
					require.Equal(t, 200, r.Status)
					if shape == "hello" {
						// A hello where its answer belongs: an invalid reply,
						// for this request alone.
						require.NotNil(t, r.Body.Error)
						assert.Equal(t, "sandbox_error", errType(r), "%+v", r.Body.Error)
					} else {
						require.Nil(t, r.Body.Error, "%s: %+v", shape, r.Body.Error)
						checkForgerFound(t, iso, shape, r.Body.Result)
					}
					assert.Empty(t, descriptorsNamed(t, token), "the service holds a descriptor the script passed")
					for i := 0; i <= poolSize; i++ {
						own := fmt.Sprintf("own-%s-%d", shape, i)
						r := s.run(fmt.Sprintf("def main():\n    return %q\n", own), 10)
						require.Nil(t, r.Body.Error, "after forging %s, request %d: %+v", shape, i, r.Body.Error)
						assert.JSONEq(t, fmt.Sprintf("%q", own), string(r.Body.Result),
							"after forging %s, request %d was answered by another script", shape, i)
						assert.NotContains(t, r.Body.Stdout, "forged")
					}
				}
				s.healthy()
			})
		}
	})
}

// checkForgerFound reads the forger's answer: the forged one when it wrote
// one first (which shows the forgery reached the service with the real
// id, on the real channel), its own return value otherwise. Every
// credentials naming another pid were refused by the kernel, on the
// channel too in fork isolation.
func checkForgerFound(t *testing.T, iso jail.Isolation, shape string, raw json.RawMessage) {
	t.Helper()
	var found struct {
		Forged      bool              `json:"forged"`
		Channel     int               `json:"channel"`
		Sockets     []int             `json:"sockets"`
		Credentials map[string]string `json:"credentials"`
	}
	require.NoError(t, json.Unmarshal(raw, &found), "%s", raw)
	assert.Equal(t, shape == "before", found.Forged, "the answer is the forged reply exactly when one came first: %s", raw)
	if iso == jail.IsolationFork {
		require.Contains(t, found.Sockets, found.Channel, "a fork child's channel is a socket")
		assert.Contains(t, found.Credentials, fmt.Sprintf("fd %d pid 4242", found.Channel))
	}
	require.NotEmpty(t, found.Credentials)
	for what, got := range found.Credentials {
		assert.Equal(t, "EPERM", got, "credentials naming another pid (%s)", what)
	}
}

// descriptorsNamed lists the descriptors of this process (the service runs
// in it) whose target names token.
func descriptorsNamed(t *testing.T, token string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var named []string
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.Contains(target, token) {
			named = append(named, e.Name()+" -> "+target)
		}
	}
	return named
}

// fileForger answers its own request, with the real message id, by a reply
// that claims output files outside output/, twice the same path, content
// that is not base64, and a figure that is no PNG, then leaves before the
// harness can answer.
const fileForger = forgeKit + `def b64(text):
    return base64.b64encode(text.encode()).decode()

def main():
    msg_id = real_id()
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
