package api

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestListener wraps a loopback listener, closed when the test ends.
func newTestListener(t *testing.T) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := NewListener(inner)
	t.Cleanup(func() { l.Close() })
	return l
}

// accepted dials l and returns both ends of the connection.
func accepted(t *testing.T, l *Listener) (client, server net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	server, err = l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { server.Close() })
	return client, server
}

// requireClosed reads from the client's end until the server's end closes.
func requireClosed(t *testing.T, client net.Conn) {
	t.Helper()
	require.NoError(t, client.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := io.Copy(io.Discard, client)
	require.NoError(t, err, "the connection was closed (EOF)")
}

// requireOpen checks the server's end still answers.
func requireOpen(t *testing.T, client, server net.Conn) {
	t.Helper()
	_, err := server.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, client.SetReadDeadline(time.Now().Add(10*time.Second)))
	b := make([]byte, 1)
	_, err = io.ReadFull(client, b)
	require.NoError(t, err, "the connection is still open")
}

func TestListener_ClosesUnusedThenAll(t *testing.T) {
	l := newTestListener(t)

	silentClient, _ := accepted(t, l)
	usedClient, usedServer := accepted(t, l)
	_, err := usedClient.Write([]byte("GET"))
	require.NoError(t, err)
	got := make([]byte, 3)
	_, err = io.ReadFull(usedServer, got)
	require.NoError(t, err)
	_, closedServer := accepted(t, l)
	require.NoError(t, closedServer.Close())
	sendingClient, sendingServer := accepted(t, l)
	_, err = sendingClient.Write([]byte("POST"))
	require.NoError(t, err)

	assert.Equal(t, 1, l.CloseUnused(), "only the connection that sent nothing, and not the closed one")
	requireClosed(t, silentClient)
	requireOpen(t, usedClient, usedServer)
	requireOpen(t, sendingClient, sendingServer)
	got = make([]byte, 4)
	_, err = io.ReadFull(sendingServer, got)
	require.NoError(t, err)
	assert.Equal(t, "POST", string(got), "the bytes waiting were not consumed")
	assert.Equal(t, 0, l.CloseUnused())

	assert.Equal(t, 2, l.CloseAll())
	requireClosed(t, usedClient)
	requireClosed(t, sendingClient)
	assert.Equal(t, 0, l.CloseAll(), "closed connections leave the list")
}

// handingListener hands over whatever is sent on conns, even after Close:
// a connection the kernel had queued when the listener was closed.
type handingListener struct {
	net.Listener
	conns chan net.Conn
}

func (h handingListener) Accept() (net.Conn, error) { return <-h.conns, nil }
func (h handingListener) Close() error              { return nil }

func TestListener_CloseIsIdempotentAndRefusesLateConnections(t *testing.T) {
	inner := handingListener{conns: make(chan net.Conn, 1)}
	l := NewListener(inner)
	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "a second Close (the server's own) is not an error")

	real, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer real.Close()
	client, err := net.Dial("tcp", real.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	late, err := real.Accept()
	require.NoError(t, err)
	inner.conns <- late
	c, err := l.Accept()
	assert.Nil(t, c)
	assert.ErrorIs(t, err, net.ErrClosed)
	requireClosed(t, client)
	assert.Equal(t, 0, l.CloseAll(), "the late connection was never listed")
}

func TestListener_ConnectionsKeepTheirSocket(t *testing.T) {
	l := newTestListener(t)
	_, server := accepted(t, l)
	sc, ok := server.(syscall.Conn)
	require.True(t, ok, "the disconnect watch needs the socket")
	raw, err := sc.SyscallConn()
	require.NoError(t, err)
	var fd uintptr
	require.NoError(t, raw.Control(func(f uintptr) { fd = f }))
	assert.NotZero(t, fd)
}
