package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pyexec/pyexec/internal/testenv"
)

// fakeMetadata is a metadata server on loopback that answers with answer
// and counts the questions it gets.
type fakeMetadata struct {
	host     string
	requests atomic.Int32
}

func newFakeMetadata(t *testing.T, answer http.HandlerFunc) *fakeMetadata {
	t.Helper()
	f := &fakeMetadata{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	f.host = strings.TrimPrefix(srv.URL, "http://")
	return f
}

// googleProject answers as Google's metadata server does, and only to a
// question asked as its clients must ask it.
func googleProject(project string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Metadata-Flavor", "Google")
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/computeMetadata/v1/project/project-id" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(project))
	}
}

// configFor reads the configuration from vars, as the service does.
func configFor(t *testing.T, vars map[string]string) Config {
	t.Helper()
	c := DefaultConfig()
	require.NoError(t, c.ParseEnv(env(vars)))
	return c
}

func TestMetadata_OnCloudRunTheProjectIsAsked(t *testing.T) {
	for _, platform := range []string{"K_SERVICE", "CLOUD_RUN_JOB"} {
		t.Run(platform, func(t *testing.T) {
			f := newFakeMetadata(t, googleProject("my-project-123"))
			core, logs := observer.New(zap.InfoLevel)
			c := configFor(t, map[string]string{platform: "pyexec", "GCE_METADATA_HOST": f.host})
			assert.Equal(t, "my-project-123", traceProject(t.Context(), c, zap.New(core)))
			assert.EqualValues(t, 1, f.requests.Load(), "asked once")
			assert.Equal(t, 1, logs.FilterMessage("trace project read from the metadata server").
				FilterField(zap.String("project", "my-project-123")).Len())
		})
	}
}

func TestMetadata_DomainScopedProject(t *testing.T) {
	f := newFakeMetadata(t, googleProject("example.com:proj\n"))
	got, err := metadataProject(t.Context(), f.host, time.Second)
	require.NoError(t, err)
	assert.Equal(t, "example.com:proj", got)
}

// Off Cloud Run, and when the project is given, no question is asked.
func TestMetadata_NotAskedWhenNotNeeded(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"not on Google Cloud":        {},
		"project given":              {"K_SERVICE": "pyexec", "PYEXEC_TRACE_PROJECT": "given"},
		"Google Cloud project given": {"K_SERVICE": "pyexec", "GOOGLE_CLOUD_PROJECT": "given"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeMetadata(t, googleProject("asked"))
			vars["GCE_METADATA_HOST"] = f.host
			core, logs := observer.New(zap.InfoLevel)
			got := traceProject(t.Context(), configFor(t, vars), zap.New(core))
			assert.Equal(t, vars["PYEXEC_TRACE_PROJECT"]+vars["GOOGLE_CLOUD_PROJECT"], got)
			assert.Zero(t, f.requests.Load(), "the metadata server was not asked")
			assert.Zero(t, logs.Len(), "nothing to say")
		})
	}
}

// Every way the question can fail leaves the project unknown, with a
// warning that says how to set it.
func TestMetadata_FailuresLeaveTheProjectUnknown(t *testing.T) {
	for name, answer := range map[string]http.HandlerFunc{
		"not found": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Metadata-Flavor", "Google")
			http.NotFound(w, r)
		},
		"not Google's server": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("my-project"))
		},
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Metadata-Flavor", "Google")
			http.Redirect(w, r, "/computeMetadata/v1/project/project-id?again", http.StatusFound)
		},
		"empty":        googleProject(""),
		"a slash":      googleProject("proj/traces/x"),
		"upper case":   googleProject("My-Project"),
		"spaces":       googleProject("my project"),
		"far too long": googleProject(strings.Repeat("a", 10000)),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeMetadata(t, answer)
			core, logs := observer.New(zap.InfoLevel)
			c := configFor(t, map[string]string{"K_SERVICE": "pyexec", "GCE_METADATA_HOST": f.host})
			assert.Empty(t, traceProject(t.Context(), c, zap.New(core)))
			assert.EqualValues(t, 1, f.requests.Load())
			warnings := logs.FilterLevelExact(zap.WarnLevel).All()
			require.Len(t, warnings, 1)
			assert.Contains(t, warnings[0].Message, "PYEXEC_TRACE_PROJECT")
		})
	}
}

// A server that does not answer holds the start-up for the timeout only.
func TestMetadata_SlowServerTimesOut(t *testing.T) {
	f := newFakeMetadata(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := metadataProject(t.Context(), f.host, timeout)
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, elapsed, timeout)
	assert.Less(t, elapsed, 3*time.Second)
	assert.EqualValues(t, 1, f.requests.Load())
}

// Nothing listening: the question fails at once.
func TestMetadata_NoServer(t *testing.T) {
	// A loopback port that a server held a moment ago.
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	_, err := metadataProject(t.Context(), host, time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "metadata server")
}

func TestMetadata_DefaultIsTheLinkLocalAddress(t *testing.T) {
	c := configFor(t, map[string]string{"K_SERVICE": "pyexec"})
	assert.True(t, c.GoogleCloud)
	assert.Equal(t, "169.254.169.254", c.MetadataHost, "an address: no DNS")
}

// lockedBuffer collects the service's log lines, written from many
// goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Sync() error { return nil }

func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var entry map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &entry), line)
		out = append(out, entry)
	}
	return out
}

// The service as Cloud Run starts it, with no project set: it reads the
// project from the metadata server, and its request lines link to the
// caller's trace, as Cloud Logging reads them.
func TestE2E_TraceProjectFromTheMetadataServer(t *testing.T) {
	py := testenv.Python(t)
	f := newFakeMetadata(t, googleProject("run-project"))
	m := NewMain()
	require.NoError(t, m.Config.ParseEnv(env(map[string]string{
		"K_SERVICE": "pyexec", "GCE_METADATA_HOST": f.host,
		"PYEXEC_PYTHON": py, "PYEXEC_HOST": "127.0.0.1", "PORT": "0", "PYEXEC_POOL_SIZE": "1",
	})))
	var logs lockedBuffer
	m.Log = newLogger(zapcore.InfoLevel, &logs)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	require.NoError(t, m.Run(ctx))
	closed := false
	t.Cleanup(func() {
		if !closed {
			assert.NoError(t, m.Close())
		}
	})
	assert.EqualValues(t, 1, f.requests.Load())

	req, err := http.NewRequest(http.MethodPost, "http://"+m.Addr+"/execute",
		strings.NewReader(`{"script": "def main():\n    return 1\n"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "linked-1")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	res, err := hc.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	closed = true
	require.NoError(t, m.Close())

	var line map[string]any
	for _, entry := range logs.lines(t) {
		if entry["message"] == "request" && entry["request_id"] == "linked-1" {
			line = entry
		}
	}
	require.NotNil(t, line, "the request's line")
	assert.Equal(t, "INFO", line["severity"])
	assert.Equal(t, "projects/run-project/traces/4bf92f3577b34da6a3ce929d0e0e4736", line["logging.googleapis.com/trace"])
	assert.Equal(t, "00f067aa0ba902b7", line["logging.googleapis.com/spanId"])
	assert.Equal(t, true, line["logging.googleapis.com/trace_sampled"])
	hr, ok := line["httpRequest"].(map[string]any)
	require.True(t, ok, "%v", line)
	assert.Equal(t, "POST", hr["requestMethod"])
	assert.Equal(t, "/execute", hr["requestUrl"])
	assert.Equal(t, 200.0, hr["status"])
	assert.Regexp(t, `^[0-9]+\.[0-9]+s$`, hr["latency"])
	loc, ok := line["logging.googleapis.com/sourceLocation"].(map[string]any)
	require.True(t, ok, "%v", line)
	assert.True(t, strings.HasSuffix(loc["file"].(string), "api/api.go"), "%v", loc)
	assert.NotContains(t, line, "caller")
}
