package load

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/wire"
)

// TestRun_ChecksAndCountsEveryAnswer drives the hello scenario against a
// fake service that answers right, wrong, refuses, and answers with
// something that is not the service's, in turn.
func TestRun_ChecksAndCountsEveryAnswer(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.Request
		data, _ := io.ReadAll(r.Body)
		if json.Unmarshal(data, &req) != nil || req.Script != helloScript {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch n.Add(1) % 4 {
		case 1:
			_, _ = io.WriteString(w, `{"result": {"message": "success"}, "stdout": "hello from sandbox\n", "stderr": "", "error": null}`)
		case 2:
			_, _ = io.WriteString(w, `{"result": {"message": "wrong"}, "stdout": "hello from sandbox\n", "stderr": "", "error": null}`)
		case 3:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
			_, _ = io.WriteString(w, `{"result": null, "stdout": "", "stderr": "", "error": {"type": "overloaded", "message": "busy"}}`)
		default:
			w.WriteHeader(502)
			_, _ = io.WriteString(w, `<html>bad gateway</html>`)
		}
	}))
	defer srv.Close()
	sc, ok := Lookup("hello")
	require.True(t, ok)
	rep, err := Run(context.Background(), sc, Options{URL: srv.URL, Concurrency: 1, Requests: 8})
	require.NoError(t, err)
	assert.EqualValues(t, 8, rep.Requests)
	assert.EqualValues(t, 2, rep.Right)
	assert.EqualValues(t, 6, rep.Wrong)
	assert.EqualValues(t, 0, rep.Errors, "every request got an answer")
	assert.Equal(t, map[string]int{"200": 4, "503": 2, "502": 2}, rep.ByStatus)
	assert.Equal(t, map[string]int{"ok": 4, "overloaded": 2, "": 2}, rep.ByType)
	assert.Len(t, rep.Failures, 6)
}
