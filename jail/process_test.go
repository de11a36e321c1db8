package jail

import (
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fd is the pidfd's number, for a look at it in /proc.
func (p *pidfd) fd() int {
	n := -1
	if rc, err := p.f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { n = int(fd) })
	}
	return n
}

// A pidfd is waited on through the runtime's poller, and a wait ends when
// its process exits, however many wait at once.
func TestPidfd_WaitsEndAtTheExit(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := openPidfd(cmd.Process.Pid)
	require.NotNil(t, p)
	t.Cleanup(p.close)

	flags, err := unix.FcntlInt(uintptr(p.fd()), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, flags&unix.O_NONBLOCK, "the pidfd is non-blocking, in the runtime's poller")
	assert.True(t, p.alive(0))
	assert.True(t, p.alive(20*time.Millisecond), "a wait on a live process ends at its deadline")

	var wg sync.WaitGroup
	results := make([]bool, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p.alive(time.Minute)
		}()
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, p.signal(unix.SIGKILL))
	wg.Wait() // a wait that missed the exit would last its minute, and say alive
	assert.Equal(t, []bool{false, false, false}, results, "every wait saw the exit")
	assert.False(t, p.alive(0))

	_ = cmd.Wait()
	assert.Error(t, p.signal(unix.SIGKILL), "the process is gone")
	var none *pidfd
	assert.False(t, none.alive(time.Second), "without a pidfd a process is taken as gone")
}
