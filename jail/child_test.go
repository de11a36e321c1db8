package jail

import (
	"bytes"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// socketChild is a Child whose channel is one end of a socket pair; the
// other end, returned, plays the child.
func socketChild(t *testing.T) (*Child, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fds[0]), "service end")
	conn, err := net.FileConn(f)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	peer := os.NewFile(uintptr(fds[1]), "child end")
	t.Cleanup(func() { conn.Close(); peer.Close() })
	return &Child{conn: conn.(*net.UnixConn)}, peer
}

// A line the socket takes whole is written before send returns; a longer
// one is finished beside the caller, which is not held up by a child that
// reads slowly (or not at all), and arrives whole and in order.
func TestChildSend_ShortLineAtOnceLongLineBeside(t *testing.T) {
	c, peer := socketChild(t)
	done := make(chan error, 1)
	short := []byte("{\"id\": \"a\"}\n")
	c.send(short, done)
	select {
	case err := <-done:
		require.NoError(t, err)
	default:
		t.Fatal("a short line was not written at once")
	}

	long := append(bytes.Repeat([]byte("x"), 8<<20), '\n')
	c.send(long, done)
	select {
	case <-done:
		t.Fatal("8 MiB cannot fit in the socket's buffer before the child reads")
	default:
	}
	got := make([]byte, len(short)+len(long))
	_, err := io.ReadFull(peer, got)
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the rest of the line was never written")
	}
	assert.True(t, bytes.Equal(append(short, long...), got), "the lines arrive whole and in order")
}

// A child gone before its request: the write's error is reported, not
// waited on.
func TestChildSend_ReportsAClosedChannel(t *testing.T) {
	c, peer := socketChild(t)
	require.NoError(t, peer.Close())
	done := make(chan error, 1)
	c.send([]byte("{\"id\": \"a\"}\n"), done)
	select {
	case err := <-done:
		assert.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome for a write to a closed channel")
	}
}
