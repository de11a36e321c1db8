package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
	"github.com/pyexec/pyexec/wire"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseEnv_DefaultsAreSafe(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.ParseEnv(env(nil)))
	assert.Equal(t, "8080", c.Port)
	assert.Equal(t, jail.IsolationFork, c.Isolation)
	assert.Equal(t, jail.ValidationStandard, c.Validation)
	assert.Equal(t, jail.CgroupAuto, c.Cgroup)
	assert.Equal(t, 5*time.Second, c.Timeout)
	assert.Equal(t, 30*time.Second, c.MaxTimeout)
	assert.Equal(t, 512, c.MemoryMB)
	assert.Equal(t, 200*1024, c.MaxScriptBytes)
	assert.Empty(t, c.APIKey)
	assert.GreaterOrEqual(t, c.PoolSize, 4)
	assert.Empty(t, c.CORSOrigins, "CORS is off")
	assert.Empty(t, c.DebugAddr, "the profiler is off")
	assert.Zero(t, c.RateLimit)
	assert.False(t, c.GoogleCloud, "no metadata server is asked off Cloud Run")
	assert.Equal(t, []string{"numpy", "pandas"}, c.Preload)
}

func TestParseEnv_PreloadNone(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.ParseEnv(env(map[string]string{"PYEXEC_PRELOAD": "none"})))
	assert.NotNil(t, c.Preload)
	assert.Empty(t, c.Preload)
}

// everyVariable sets each variable the service reads to a value other than
// its default, and says where it must land.
type setting struct {
	value string
	want  any
	got   func(c Config) any
}

func everyVariable() map[string]setting {
	return map[string]setting{
		"PORT":                          {"9000", "9000", func(c Config) any { return c.Port }},
		"PYEXEC_HOST":                   {"127.0.0.1", "127.0.0.1", func(c Config) any { return c.Host }},
		"PYEXEC_POOL_SIZE":              {"0", 0, func(c Config) any { return c.PoolSize }},
		"PYEXEC_ISOLATION":              {"strict", jail.IsolationStrict, func(c Config) any { return c.Isolation }},
		"PYEXEC_VALIDATION":             {"minimal", jail.ValidationMinimal, func(c Config) any { return c.Validation }},
		"PYEXEC_TIMEOUT":                {"2.5", 2500 * time.Millisecond, func(c Config) any { return c.Timeout }},
		"PYEXEC_MAX_TIMEOUT":            {"1m", time.Minute, func(c Config) any { return c.MaxTimeout }},
		"PYEXEC_MEMORY_MB":              {"256", 256, func(c Config) any { return c.MemoryMB }},
		"PYEXEC_PIDS_MAX":               {"32", 32, func(c Config) any { return c.PidsMax }},
		"PYEXEC_TMPFS_MB":               {"16", 16, func(c Config) any { return c.TmpfsMB }},
		"PYEXEC_MAX_SCRIPT_BYTES":       {"1000", 1000, func(c Config) any { return c.MaxScriptBytes }},
		"PYEXEC_MAX_OUTPUT_BYTES":       {"4096", 4096, func(c Config) any { return c.MaxOutputBytes }},
		"PYEXEC_MAX_INPUT_FILES":        {"3", 3, func(c Config) any { return c.MaxInputFiles }},
		"PYEXEC_MAX_INPUT_BYTES":        {"2048", 2048, func(c Config) any { return c.MaxInputBytes }},
		"PYEXEC_MAX_OUTPUT_FILES":       {"4", 4, func(c Config) any { return c.MaxOutputFiles }},
		"PYEXEC_MAX_OUTPUT_FILES_BYTES": {"8192", 8192, func(c Config) any { return c.MaxOutputFilesBytes }},
		"PYEXEC_QUEUE_TIMEOUT":          {"500ms", 500 * time.Millisecond, func(c Config) any { return c.QueueTimeout }},
		"PYEXEC_API_KEY":                {"k", "k", func(c Config) any { return c.APIKey }},
		"PYEXEC_PYTHON":                 {"/x/python", "/x/python", func(c Config) any { return c.Python }},
		"PYEXEC_NSJAIL":                 {"/x/nsjail", "/x/nsjail", func(c Config) any { return c.Nsjail }},
		"PYEXEC_CGROUP":                 {"none", jail.CgroupNone, func(c Config) any { return c.Cgroup }},
		"PYEXEC_WORKER_MAX_AGE":         {"90s", 90 * time.Second, func(c Config) any { return c.WorkerMaxAge }},
		"PYEXEC_STARTUP_TIMEOUT":        {"90", 90 * time.Second, func(c Config) any { return c.StartupTimeout }},
		"PYEXEC_SPAWN_TIMEOUT":          {"120", 120 * time.Second, func(c Config) any { return c.SpawnTimeout }},
		"PYEXEC_SHUTDOWN_TIMEOUT":       {"4.5", 4500 * time.Millisecond, func(c Config) any { return c.ShutdownTimeout }},
		"PYEXEC_RATE_LIMIT":             {"60", 60, func(c Config) any { return c.RateLimit }},
		"PYEXEC_CORS_ORIGINS": {" https://app.example.com, http://localhost:3000 ,,http://[::1]:8000",
			[]string{"https://app.example.com", "http://localhost:3000", "http://[::1]:8000"}, func(c Config) any { return c.CORSOrigins }},
		"PYEXEC_TRACE_PROJECT": {"proj", "proj", func(c Config) any { return c.TraceProject }},
		"GOOGLE_CLOUD_PROJECT": {"gproj", "gproj", func(c Config) any { return c.TraceProject }},
		"PYEXEC_LOG_LEVEL":     {"debug", zapcore.DebugLevel, func(c Config) any { return c.LogLevel }},
		"PYEXEC_DEBUG_ADDR":    {"[::1]:6060", "[::1]:6060", func(c Config) any { return c.DebugAddr }},
		"K_SERVICE":            {"pyexec", true, func(c Config) any { return c.GoogleCloud }},
		"CLOUD_RUN_JOB":        {"pyexec-job", true, func(c Config) any { return c.GoogleCloud }},
		"GCE_METADATA_HOST":    {"127.0.0.1:8999", "127.0.0.1:8999", func(c Config) any { return c.MetadataHost }},
		"PYEXEC_PRELOAD": {"numpy, pandas,matplotlib.pyplot", []string{"numpy", "pandas", "matplotlib.pyplot"},
			func(c Config) any { return c.Preload }},
	}
}

// platformVariables are set by the platform (or, for GCE_METADATA_HOST, by
// whoever emulates it), not by whoever deploys the service: the README
// names them where it says what they change, not in its table.
var platformVariables = []string{"GOOGLE_CLOUD_PROJECT", "K_SERVICE", "CLOUD_RUN_JOB", "GCE_METADATA_HOST"}

func TestParseEnv_ReadsEveryVariable(t *testing.T) {
	for name, v := range everyVariable() {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			require.NotEqual(t, v.want, v.got(c), "the test value is the default: it would prove nothing")
			require.NoError(t, c.ParseEnv(env(map[string]string{name: v.value})))
			assert.Equal(t, v.want, v.got(c))
		})
	}
}

// The README's configuration table and the variables the service reads are
// the same list.
func TestParseEnv_ReadsWhatTheREADMELists(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|").FindAllStringSubmatch(string(data), -1) {
		listed[m[1]] = true
	}
	require.Greater(t, len(listed), 20, "the configuration table was not found")
	for name := range listed {
		assert.Contains(t, everyVariable(), name, "the README lists %s; the test does not set it", name)
	}
	for name := range everyVariable() {
		if slices.Contains(platformVariables, name) {
			assert.True(t, strings.Contains(string(data), "`"+name+"`"), "the README says what %s changes", name)
			assert.False(t, listed[name], "%s is the platform's, not a setting", name)
			continue
		}
		assert.True(t, listed[name], "%s is read but not in the README's table", name)
	}
}

// An unset or empty variable keeps the default.
func TestParseEnv_EmptyKeepsTheDefault(t *testing.T) {
	c := DefaultConfig()
	vars := map[string]string{}
	for name := range everyVariable() {
		vars[name] = " "
	}
	require.NoError(t, c.ParseEnv(env(vars)))
	want := DefaultConfig()
	for name, v := range everyVariable() {
		assert.Equal(t, v.got(want), v.got(c), name)
	}
}

func TestParseEnv_TraceProjectOverridesGoogleCloudProject(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.ParseEnv(env(map[string]string{"GOOGLE_CLOUD_PROJECT": "g", "PYEXEC_TRACE_PROJECT": "p"})))
	assert.Equal(t, "p", c.TraceProject)
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
		"unknown validation":      {"PYEXEC_VALIDATION": "none"},
		"timeout over max":        {"PYEXEC_TIMEOUT": "60"},
		"timeout garbage":         {"PYEXEC_TIMEOUT": "soon"},
		"tiny memory":             {"PYEXEC_MEMORY_MB": "1"},
		"unknown cgroup":          {"PYEXEC_CGROUP": "v3"},
		"isolation in capitals":   {"PYEXEC_ISOLATION": "Fork"},
		"unknown log level":       {"PYEXEC_LOG_LEVEL": "loud"},
		"log level above error":   {"PYEXEC_LOG_LEVEL": "fatal"},
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
		"metadata host with path": {"GCE_METADATA_HOST": "127.0.0.1:80/x"},
		"metadata host with user": {"GCE_METADATA_HOST": "me@127.0.0.1:80"},
		"metadata host a URL":     {"GCE_METADATA_HOST": "http://127.0.0.1:80"},
		"preload not a module":    {"PYEXEC_PRELOAD": "numpy,os; import x"},
		"preload a path":          {"PYEXEC_PRELOAD": "../evil"},
		"preload none among":      {"PYEXEC_PRELOAD": "numpy,none-of-it"},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			err := c.ParseEnv(env(vars))
			require.Error(t, err)
			for name := range vars {
				if len(vars) == 1 {
					assert.Contains(t, err.Error(), name, "the error names the variable")
				}
			}
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

// The body limit has room for the largest request the limits allow, with
// every byte of script, content and path JSON-escaped to six.
func TestBodyLimitFitsTheLargestRequest(t *testing.T) {
	c := DefaultConfig()
	c.MaxScriptBytes, c.MaxInputFiles, c.MaxInputBytes = 1000, 4, 4000
	path := strings.Repeat("\x01", pyexec.MaxFileSegmentBytes) + "/" + strings.Repeat("\x01", pyexec.MaxFileSegmentBytes)
	req := pyexec.Request{Script: strings.Repeat("\x01", c.MaxScriptBytes), Args: json.RawMessage(`{}`)}
	for i := range c.MaxInputFiles {
		req.Files = append(req.Files, pyexec.File{Path: path + string(rune('a'+i)), Content: bytes.Repeat([]byte{1}, c.MaxInputBytes/c.MaxInputFiles)})
	}
	body, err := json.Marshal(wire.NewRequest(req))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(body), c.BodyLimit())
	assert.Greater(t, len(body), 6*(c.MaxScriptBytes+c.MaxInputBytes), "the request is as large as the limits allow")
}
