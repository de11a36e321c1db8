package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/wire"
)

// gzipBomb is a gzip stream of n MiB of zeros: one member of a MiB
// repeated (RFC 1952 allows members back to back), about a kilobyte each.
func gzipBomb(t *testing.T, n int) []byte {
	t.Helper()
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write(make([]byte, 1<<20))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return bytes.Repeat(member.Bytes(), n)
}

// A body within the limit that would expand to 256 MiB is refused without
// being expanded: the service allocates a few megabytes at most for it.
func TestExecute_GzipBombIsRefusedUnread(t *testing.T) {
	const mib = 256
	bomb := gzipBomb(t, mib)
	require.Less(t, len(bomb), 1<<20, "the bomb fits in the default body limit")
	expanded, err := io.Copy(io.Discard, mustGunzip(t, bomb))
	require.NoError(t, err)
	require.EqualValues(t, mib<<20, expanded, "the bomb is a real one")

	exec := &fakeExecutor{resp: &pyexec.Response{Result: json.RawMessage("1")}}
	app := newApp(t, Config{}, exec, func() pyexec.Status { return pyexec.Status{Ready: true} }, zap.NewNop())
	req := httptest.NewRequest(http.MethodPost, "/execute", bytes.NewReader(bomb))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := app.Test(req, -1)
	require.NoError(t, err)
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	runtime.ReadMemStats(&after)

	assert.Equal(t, 415, res.StatusCode, "%s", data)
	assert.Equal(t, "identity", res.Header.Get("Accept-Encoding"))
	var body wire.Response
	require.NoError(t, json.Unmarshal(data, &body))
	require.NotNil(t, body.Error, "%s", data)
	assert.Equal(t, pyexec.CodeUnsupportedMediaType, body.Error.Type)
	assert.Contains(t, body.Error.Message, "gzip")
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %.1f MiB to refuse a %d KiB body expanding to %d MiB", float64(allocated)/(1<<20), len(bomb)>>10, mib)
	assert.Less(t, allocated, uint64(8<<20), "the body was expanded")
	assert.Empty(t, exec.got.ID, "nothing ran")
}

func mustGunzip(t *testing.T, data []byte) io.Reader {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	return zr
}
