package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec/internal/testenv"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseEnv_DefaultsAreSafe(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.ParseEnv(env(nil)))
	assert.Equal(t, "8080", c.Port)
	assert.Equal(t, "strict", c.Isolation)
	assert.Equal(t, "standard", c.Validation)
	assert.Equal(t, 5*time.Second, c.Timeout)
	assert.Equal(t, 30*time.Second, c.MaxTimeout)
	assert.Equal(t, 512, c.MemoryMB)
	assert.Equal(t, 200*1024, c.MaxScriptBytes)
	assert.Empty(t, c.APIKey)
	assert.GreaterOrEqual(t, c.PoolSize, 4)
	assert.Empty(t, c.CORSOrigins, "CORS is off")
}

func TestParseEnv_ReadsEveryVariable(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.ParseEnv(env(map[string]string{
		"PORT": "9000", "PYEXEC_POOL_SIZE": "0", "PYEXEC_VALIDATION": "minimal",
		"PYEXEC_TIMEOUT": "2.5", "PYEXEC_MAX_TIMEOUT": "1m", "PYEXEC_MEMORY_MB": "256",
		"PYEXEC_MAX_SCRIPT_BYTES": "1000", "PYEXEC_MAX_OUTPUT_BYTES": "4096",
		"PYEXEC_QUEUE_TIMEOUT": "500ms", "PYEXEC_API_KEY": "k", "PYEXEC_NSJAIL": "/x/nsjail",
		"PYEXEC_PYTHON": "/x/python", "PYEXEC_LOG_LEVEL": "debug", "PYEXEC_CGROUP": "none",
		"PYEXEC_DEBUG_ADDR":    "[::1]:6060",
		"PYEXEC_CORS_ORIGINS":  " https://app.example.com, http://localhost:3000 ,,http://[::1]:8000",
		"PYEXEC_SPAWN_TIMEOUT": "120", "PYEXEC_STARTUP_TIMEOUT": "90",
	})))
	assert.Equal(t, "9000", c.Port)
	assert.Equal(t, 0, c.PoolSize)
	assert.Equal(t, "minimal", c.Validation)
	assert.Equal(t, 2500*time.Millisecond, c.Timeout)
	assert.Equal(t, time.Minute, c.MaxTimeout)
	assert.Equal(t, 256, c.MemoryMB)
	assert.Equal(t, 1000, c.MaxScriptBytes)
	assert.Equal(t, 4096, c.MaxOutputBytes)
	assert.Equal(t, 500*time.Millisecond, c.QueueTimeout)
	assert.Equal(t, "k", c.APIKey)
	assert.Equal(t, "/x/nsjail", c.Nsjail)
	assert.Equal(t, "/x/python", c.Python)
	assert.Equal(t, "debug", c.LogLevel)
	assert.Equal(t, "none", c.Cgroup)
	assert.Equal(t, "[::1]:6060", c.DebugAddr)
	assert.Equal(t, []string{"https://app.example.com", "http://localhost:3000", "http://[::1]:8000"}, c.CORSOrigins)
	assert.Equal(t, 120*time.Second, c.SpawnTimeout)
	assert.Equal(t, 90*time.Second, c.StartupTimeout)
}

// A worker slower to start than the spawn timeout fails the start-up with a
// message naming the variable that governs it.
func TestRun_SpawnTimeoutNamesItsVariable(t *testing.T) {
	m := NewMain()
	m.Config.Python = testenv.Python(t)
	m.Config.Host, m.Config.Port, m.Config.PoolSize = "127.0.0.1", "0", 1
	m.Config.SpawnTimeout, m.Config.StartupTimeout = 20*time.Millisecond, 3*time.Second
	m.Log = zap.NewNop()
	t.Cleanup(func() { assert.NoError(t, m.Close()) })
	err := m.Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "PYEXEC_SPAWN_TIMEOUT")
}

func TestParseEnv_RefusesBadValues(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"pool size not a number":  {"PYEXEC_POOL_SIZE": "many"},
		"negative pool size":      {"PYEXEC_POOL_SIZE": "-1"},
		"unknown isolation":       {"PYEXEC_ISOLATION": "vm"},
		"fork runs at least once": {"PYEXEC_ISOLATION": "fork", "PYEXEC_FORK_MAX_RUNS": "0"},
		"unknown validation":      {"PYEXEC_VALIDATION": "none"},
		"timeout over max":        {"PYEXEC_TIMEOUT": "60"},
		"timeout garbage":         {"PYEXEC_TIMEOUT": "soon"},
		"tiny memory":             {"PYEXEC_MEMORY_MB": "1"},
		"unknown cgroup":          {"PYEXEC_CGROUP": "v3"},
		"port not a number":       {"PORT": "http"},
		"negative queue timeout":  {"PYEXEC_QUEUE_TIMEOUT": "-1s"},
		"debug on all interfaces": {"PYEXEC_DEBUG_ADDR": ":6060"},
		"debug on a public IP":    {"PYEXEC_DEBUG_ADDR": "10.0.0.1:6060"},
		"debug by host name":      {"PYEXEC_DEBUG_ADDR": "localhost:6060"},
		"debug without a port":    {"PYEXEC_DEBUG_ADDR": "127.0.0.1"},
		"CORS for every origin":   {"PYEXEC_CORS_ORIGINS": "*"},
		"CORS wildcard among":     {"PYEXEC_CORS_ORIGINS": "https://a.example, *"},
		"CORS subdomain wildcard": {"PYEXEC_CORS_ORIGINS": "https://*.example.com"},
		"CORS origin with a path": {"PYEXEC_CORS_ORIGINS": "https://app.example.com/"},
		"CORS origin with query":  {"PYEXEC_CORS_ORIGINS": "https://app.example.com?x=1"},
		"CORS without a scheme":   {"PYEXEC_CORS_ORIGINS": "app.example.com"},
		"CORS other scheme":       {"PYEXEC_CORS_ORIGINS": "ftp://app.example.com"},
		"CORS null origin":        {"PYEXEC_CORS_ORIGINS": "null"},
		"CORS bad port":           {"PYEXEC_CORS_ORIGINS": "http://localhost:99999"},
		"CORS empty port":         {"PYEXEC_CORS_ORIGINS": "http://localhost:"},
		"CORS with user":          {"PYEXEC_CORS_ORIGINS": "https://me@app.example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			assert.Error(t, c.ParseEnv(env(vars)))
		})
	}
}

func TestRun_FailsClearlyWithoutASandbox(t *testing.T) {
	m := NewMain()
	m.Config.Python = "/nonexistent/bin/python"
	m.Config.Port = "0"
	err := m.Run(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/nonexistent/bin/python")
	assert.NoError(t, m.Close())
}
