package jail

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fillPipe writes to the non-blocking fd until the pipe is full.
func fillPipe(t *testing.T, fd int, b byte) int {
	t.Helper()
	chunk := bytes.Repeat([]byte{b}, 4096)
	total := 0
	for {
		n, err := unix.Write(fd, chunk)
		if err == unix.EAGAIN {
			return total
		}
		require.NoError(t, err)
		total += n
	}
}

// Until watched, nobody reads the pipe: what the script printed waits in
// it and is taken whole by settle. Once watched it is read as it fills,
// until the writers are gone.
func TestOutputPipe_ReadAtSettleUntilWatched(t *testing.T) {
	var fds [2]int
	require.NoError(t, unix.Pipe2(fds[:], unix.O_CLOEXEC))
	p, err := newOutputPipe(fds[0], 4<<20)
	require.NoError(t, err)
	defer p.close()
	require.NoError(t, unix.SetNonblock(fds[1], true))

	first := fillPipe(t, fds[1], 'a')
	time.Sleep(50 * time.Millisecond)
	more, err := unix.Write(fds[1], []byte("b"))
	assert.Equal(t, unix.EAGAIN, err, "an unwatched pipe is not read (wrote %d more)", more)

	p.watch()
	// Read as it fills: another pipe's worth goes through.
	deadline := time.Now().Add(10 * time.Second)
	second := 0
	for second < first && time.Now().Before(deadline) {
		second += fillPipe(t, fds[1], 'c')
		time.Sleep(time.Millisecond)
	}
	require.GreaterOrEqual(t, second, first, "a watched pipe is read as it fills")
	require.NoError(t, unix.Close(fds[1]))
	p.awaitEOF(time.Now().Add(10 * time.Second))
	p.settle()
	text, cut := p.text()
	assert.False(t, cut)
	assert.Equal(t, first+second, len(text))
	assert.Equal(t, bytes.Repeat([]byte{'a'}, first), []byte(text[:first]), "in order")
}

// settle on a pipe never watched takes what it holds; after close it
// reads nothing, not even from a new descriptor given the same number.
func TestOutputPipe_UnwatchedSettleAndClose(t *testing.T) {
	var fds [2]int
	require.NoError(t, unix.Pipe2(fds[:], unix.O_CLOEXEC))
	p, err := newOutputPipe(fds[0], 1<<20)
	require.NoError(t, err)
	_, err = unix.Write(fds[1], []byte("printed before the answer\n"))
	require.NoError(t, err)
	p.settle()
	text, _ := p.text()
	assert.Equal(t, "printed before the answer\n", text)

	p.close()
	require.NoError(t, unix.Close(fds[1]))
	var next [2]int
	require.NoError(t, unix.Pipe2(next[:], unix.O_CLOEXEC|unix.O_NONBLOCK))
	defer unix.Close(next[0])
	defer unix.Close(next[1])
	_, err = unix.Write(next[1], []byte("someone else's"))
	require.NoError(t, err)
	p.settle()
	p.watch()
	p.close()
	text, _ = p.text()
	assert.Equal(t, "printed before the answer\n", text)
	b := make([]byte, 64)
	n, err := unix.Read(next[0], b)
	require.NoError(t, err)
	assert.Equal(t, "someone else's", string(b[:n]), "a closed pipe's number is not read again")
}
