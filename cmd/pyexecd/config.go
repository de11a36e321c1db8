package main

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/jail"
)

// Config is the service's whole configuration, read from the environment
// and checked here once; the packages it is handed down to take it as
// given. DefaultConfig holds every default (the README's configuration
// table lists them).
type Config struct {
	Port           string
	Host           string
	PoolSize       int
	Isolation      jail.Isolation
	Validation     jail.Validation
	Timeout        time.Duration
	MaxTimeout     time.Duration
	MemoryMB       int
	PidsMax        int
	TmpfsMB        int
	MaxScriptBytes int
	MaxOutputBytes int
	// Input files of a request, and the files returned from output/: how
	// many, and how many bytes of content in all.
	MaxInputFiles       int
	MaxInputBytes       int
	MaxOutputFiles      int
	MaxOutputFilesBytes int
	QueueTimeout        time.Duration
	APIKey              string
	Nsjail              string
	Python              string
	Cgroup              jail.CgroupMode
	LogLevel            zapcore.Level
	WorkerMaxAge        time.Duration
	StartupTimeout      time.Duration
	SpawnTimeout        time.Duration
	ShutdownTimeout     time.Duration
	RateLimit           int
	TraceProject        string
	// GoogleCloud is set when the platform's variables say the service
	// runs on Cloud Run (K_SERVICE for a service, CLOUD_RUN_JOB for a job):
	// without a TraceProject, start-up then asks the metadata server.
	GoogleCloud bool
	// MetadataHost is the metadata server's host[:port]; GCE_METADATA_HOST
	// overrides it, as it does for Google's client libraries.
	MetadataHost string
	// CORSOrigins are the web origins whose pages may call the API from a
	// browser; none (the default) keeps CORS off.
	CORSOrigins []string
	// DebugAddr, when set, is a loopback host:port serving Go's profiler
	// (/debug/pprof/); never an address other hosts can reach.
	DebugAddr string
	// Preload are the modules every worker's interpreter imports before
	// it serves a script; none when empty.
	Preload []string
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	// Four workers per CPU: a spawn spends part of its time waiting on the
	// kernel (namespaces, mounts), so several must overlap to keep the
	// CPUs busy refilling under sustained load (see docs/BENCHMARKS.md).
	size := 4 * runtime.NumCPU()
	if size > 32 {
		size = 32
	}
	return Config{
		Port:           "8080",
		Host:           "",
		PoolSize:       size,
		Isolation:      jail.IsolationFork,
		Validation:     jail.ValidationStandard,
		Timeout:        5 * time.Second,
		MaxTimeout:     30 * time.Second,
		MemoryMB:       512,
		PidsMax:        64,
		TmpfsMB:        64,
		MaxScriptBytes: 200 * 1024,
		MaxOutputBytes: 1 << 20,
		// Input files are held in memory while a request is read and
		// written to the jail's /tmp, so they count against
		// PYEXEC_TMPFS_MB; 10 MiB leaves most of the default 64 MB to
		// the script.
		MaxInputFiles:       100,
		MaxInputBytes:       1 << 20,
		MaxOutputFiles:      100,
		MaxOutputFilesBytes: 10 << 20,
		QueueTimeout:        10 * time.Second,
		Python:              ".venv/bin/python",
		Cgroup:              jail.CgroupAuto,
		LogLevel:            zapcore.InfoLevel,
		WorkerMaxAge:        10 * time.Minute,
		StartupTimeout:      60 * time.Second,
		SpawnTimeout:        30 * time.Second,
		// Cloud Run allows 10 s between SIGTERM and SIGKILL.
		ShutdownTimeout: 9 * time.Second,
		// An address: on a host off Google Cloud, the name
		// metadata.google.internal could wait on a slow DNS.
		MetadataHost: "169.254.169.254",
		// matplotlib.pyplot is left out: it would double the CPU of every
		// spawn and add about 30 MB to every idle worker (README).
		Preload: []string{"numpy", "pandas"},
	}
}

// ParseEnv fills c from environment variables looked up with getenv;
// unset or empty variables keep their current values.
func (c *Config) ParseEnv(getenv func(string) string) error {
	p := envParser{getenv: getenv}
	p.str("PORT", &c.Port)
	p.str("PYEXEC_HOST", &c.Host)
	p.integer("PYEXEC_POOL_SIZE", &c.PoolSize, 0, 256)
	enum(&p, "PYEXEC_ISOLATION", &c.Isolation, jail.ParseIsolation)
	enum(&p, "PYEXEC_VALIDATION", &c.Validation, jail.ParseValidation)
	p.seconds("PYEXEC_TIMEOUT", &c.Timeout)
	p.seconds("PYEXEC_MAX_TIMEOUT", &c.MaxTimeout)
	p.integer("PYEXEC_MEMORY_MB", &c.MemoryMB, 64, 1<<20)
	p.integer("PYEXEC_PIDS_MAX", &c.PidsMax, 8, 1<<16)
	p.integer("PYEXEC_TMPFS_MB", &c.TmpfsMB, 1, 1<<16)
	p.integer("PYEXEC_MAX_SCRIPT_BYTES", &c.MaxScriptBytes, 1, 64<<20)
	p.integer("PYEXEC_MAX_OUTPUT_BYTES", &c.MaxOutputBytes, 1024, 64<<20)
	p.integer("PYEXEC_MAX_INPUT_FILES", &c.MaxInputFiles, 0, 10000)
	p.integer("PYEXEC_MAX_INPUT_BYTES", &c.MaxInputBytes, 0, 1<<30)
	p.integer("PYEXEC_MAX_OUTPUT_FILES", &c.MaxOutputFiles, 0, 10000)
	p.integer("PYEXEC_MAX_OUTPUT_FILES_BYTES", &c.MaxOutputFilesBytes, 0, 1<<30)
	p.seconds("PYEXEC_QUEUE_TIMEOUT", &c.QueueTimeout)
	p.str("PYEXEC_API_KEY", &c.APIKey)
	p.str("PYEXEC_NSJAIL", &c.Nsjail)
	p.str("PYEXEC_PYTHON", &c.Python)
	enum(&p, "PYEXEC_CGROUP", &c.Cgroup, jail.ParseCgroupMode)
	enum(&p, "PYEXEC_LOG_LEVEL", &c.LogLevel, parseLevel)
	p.seconds("PYEXEC_WORKER_MAX_AGE", &c.WorkerMaxAge)
	p.seconds("PYEXEC_STARTUP_TIMEOUT", &c.StartupTimeout)
	p.seconds("PYEXEC_SPAWN_TIMEOUT", &c.SpawnTimeout)
	p.seconds("PYEXEC_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	p.integer("PYEXEC_RATE_LIMIT", &c.RateLimit, 0, 1<<30)
	p.str("GOOGLE_CLOUD_PROJECT", &c.TraceProject)
	p.str("PYEXEC_TRACE_PROJECT", &c.TraceProject)
	p.present("K_SERVICE", &c.GoogleCloud)
	p.present("CLOUD_RUN_JOB", &c.GoogleCloud)
	p.str("GCE_METADATA_HOST", &c.MetadataHost)
	p.str("PYEXEC_DEBUG_ADDR", &c.DebugAddr)
	p.list("PYEXEC_CORS_ORIGINS", &c.CORSOrigins)
	p.list("PYEXEC_PRELOAD", &c.Preload)
	if len(c.Preload) == 1 && c.Preload[0] == "none" {
		c.Preload = []string{}
	}
	if p.err != nil {
		return p.err
	}
	return c.Validate()
}

// Validate checks values that depend on each other.
func (c *Config) Validate() error {
	if c.Timeout <= 0 || c.MaxTimeout <= 0 || c.Timeout > c.MaxTimeout {
		return fmt.Errorf("PYEXEC_TIMEOUT (%v) must be positive and at most PYEXEC_MAX_TIMEOUT (%v)", c.Timeout, c.MaxTimeout)
	}
	if c.QueueTimeout <= 0 {
		return fmt.Errorf("PYEXEC_QUEUE_TIMEOUT must be positive")
	}
	if c.SpawnTimeout <= 0 || c.StartupTimeout <= 0 {
		return fmt.Errorf("PYEXEC_SPAWN_TIMEOUT and PYEXEC_STARTUP_TIMEOUT must be positive")
	}
	if c.MaxInputBytes >= c.TmpfsMB<<20 {
		return fmt.Errorf("PYEXEC_MAX_INPUT_BYTES (%d) must be less than PYEXEC_TMPFS_MB (%d MB): input files are written there", c.MaxInputBytes, c.TmpfsMB)
	}
	if _, err := strconv.Atoi(c.Port); err != nil {
		return fmt.Errorf("PORT=%q: not a port number", c.Port)
	}
	if u, err := url.Parse("http://" + c.MetadataHost); err != nil || u.Host != c.MetadataHost || c.MetadataHost == "" {
		return fmt.Errorf("GCE_METADATA_HOST=%q: want host[:port], such as 127.0.0.1:8080", c.MetadataHost)
	}
	if c.DebugAddr != "" && !loopback(c.DebugAddr) {
		return fmt.Errorf("PYEXEC_DEBUG_ADDR=%q: want a loopback address and port, such as 127.0.0.1:6060", c.DebugAddr)
	}
	for _, name := range c.Preload {
		if !moduleName.MatchString(name) {
			return fmt.Errorf("PYEXEC_PRELOAD: %q is not a module name: want names such as numpy,pandas,matplotlib.pyplot, or none", name)
		}
	}
	for _, o := range c.CORSOrigins {
		if o == "*" {
			// Any page on the web could then make its visitors' browsers
			// run scripts here.
			return fmt.Errorf("PYEXEC_CORS_ORIGINS: \"*\" is refused; list the origins whose pages may call the API")
		}
		if !webOrigin(o) {
			return fmt.Errorf("PYEXEC_CORS_ORIGINS: %q is not an origin: want http(s)://host[:port], without path or wildcard, such as https://app.example.com", o)
		}
	}
	return nil
}

// moduleName is a dotted Python module name.
var moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// webOrigin reports whether o is an http or https origin as a browser sends
// it in its Origin header: scheme, host and optional port, nothing more.
func webOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(o, "#") {
		return false
	}
	host := u.Hostname()
	if host == "" || strings.ContainsAny(host, "*%") {
		return false
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return false
		}
	}
	return true
}

// loopback reports whether addr is host:port with a loopback IP host
// (names are refused: what they resolve to can change).
func loopback(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type envParser struct {
	getenv func(string) string
	err    error
}

func (p *envParser) lookup(name string) (string, bool) {
	v := strings.TrimSpace(p.getenv(name))
	return v, v != "" && p.err == nil
}

func (p *envParser) str(name string, dst *string) {
	if v, ok := p.lookup(name); ok {
		*dst = v
	}
}

// present sets *dst when the variable is set, whatever its value.
func (p *envParser) present(name string, dst *bool) {
	if _, ok := p.lookup(name); ok {
		*dst = true
	}
}

func (p *envParser) integer(name string, dst *int, min, max int) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		p.err = fmt.Errorf("%s=%q: want a whole number from %d to %d", name, v, min, max)
		return
	}
	*dst = n
}

// list reads comma-separated values, leaving out empty ones.
func (p *envParser) list(name string, dst *[]string) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	*dst = out
}

// enum reads a value that parse turns into one of a fixed set.
func enum[T any](p *envParser, name string, dst *T, parse func(string) (T, error)) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	t, err := parse(v)
	if err != nil {
		p.err = fmt.Errorf("%s: %w", name, err)
		return
	}
	*dst = t
}

// parseLevel reads a log level: debug, info, warn or error.
func parseLevel(s string) (zapcore.Level, error) {
	switch l, err := zapcore.ParseLevel(s); {
	case err != nil, l < zapcore.DebugLevel, l > zapcore.ErrorLevel:
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	default:
		return l, nil
	}
}

// seconds accepts a number of seconds ("2.5") or a Go duration ("500ms").
func (p *envParser) seconds(name string, dst *time.Duration) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
		*dst = time.Duration(f * float64(time.Second))
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.err = fmt.Errorf("%s=%q: want seconds (2.5) or a duration (500ms)", name, v)
		return
	}
	*dst = d
}

// BodyLimit is the largest request body the service reads: a script of
// MaxScriptBytes and MaxInputFiles input files holding MaxInputBytes in
// all, every byte of them JSON-escaped to six (base64 content takes less),
// each file's path escaped too, and room for the rest of the envelope.
func (c *Config) BodyLimit() int {
	return 6*c.MaxScriptBytes + 6*c.MaxInputBytes + c.MaxInputFiles*(6*pyexec.MaxFilePathBytes+128) + 64*1024
}
