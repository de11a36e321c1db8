// Command pyexecd is the pyexec service: it wires the jail, the warm pool and
// the HTTP API together and serves on $PORT.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/api"
	"github.com/pyexec/pyexec/jail"
	"github.com/pyexec/pyexec/pool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	m := NewMain()
	if err := m.Config.ParseEnv(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "pyexecd: configuration:", err)
		os.Exit(2)
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "pyexecd:", err)
		m.Close()
		os.Exit(1)
	}
	<-ctx.Done()
	m.Log.Info("shutting down")
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pyexecd: shutdown:", err)
		os.Exit(1)
	}
}

// Main is the whole service. Tests build one, set Config (Port "0" picks a
// free port), call Run, talk to Addr, then Close.
type Main struct {
	Config Config
	// Log is built by Run from Config.LogLevel unless already set.
	Log *zap.Logger
	// Addr is the address the service listens on, set by Run.
	Addr string
	// DebugAddr is where the profiler listens (Config.DebugAddr, port
	// resolved), set by Run; empty when it is off.
	DebugAddr string

	spawner *jail.Spawner
	pool    executor
	app     *fiber.App
	ln      *api.Listener
	debug   *debugServer
	served  chan error
	// cancelRequests ends every running script when a graceful shutdown
	// runs out of time.
	cancelRequests context.CancelFunc
	draining       atomic.Bool
	closeOnce      sync.Once
	closeErr       error
}

// executor is what runs the scripts: a warm pool.Pool, or a pool.Cold
// when the pool size is 0.
type executor interface {
	pyexec.Executor
	Start()
	WaitReady(ctx context.Context) error
	Status() (pyexec.PoolStatus, bool, string)
	Close()
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main { return &Main{Config: DefaultConfig()} }

// Run starts the jail and the pool, waits until a first worker is ready
// (so a broken sandbox is reported at once, not on the first request), then
// serves HTTP in the background and returns.
func (m *Main) Run(ctx context.Context) error {
	c := m.Config
	if err := c.Validate(); err != nil {
		return err
	}
	if m.Log == nil {
		m.Log = newLogger(c.LogLevel, zapcore.Lock(os.Stderr))
	}
	sp, err := jail.NewSpawner(jail.Config{
		PythonPath:          c.Python,
		NsjailPath:          c.Nsjail,
		MemoryMB:            c.MemoryMB,
		PidsMax:             c.PidsMax,
		TmpfsMB:             c.TmpfsMB,
		Cgroup:              c.Cgroup,
		MaxOutputBytes:      c.MaxOutputBytes,
		MaxScriptBytes:      c.MaxScriptBytes,
		MaxInputFiles:       c.MaxInputFiles,
		MaxInputBytes:       c.MaxInputBytes,
		MaxOutputFiles:      c.MaxOutputFiles,
		MaxOutputFilesBytes: c.MaxOutputFilesBytes,
		Validation:          c.Validation,
		MaxLifetime:         c.WorkerMaxAge + 5*time.Minute,
		SpawnTimeout:        c.SpawnTimeout,
		Isolation:           c.Isolation,
		Preload:             c.Preload,
	}, m.Log.Named("jail"))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	m.spawner = sp
	logCapabilities(m.Log, sp.Capabilities())
	if c.DebugAddr != "" {
		if m.debug, err = startDebug(c.DebugAddr, m.Log); err != nil {
			return fmt.Errorf("start: %w", err)
		}
		m.DebugAddr = m.debug.addr
	}
	reg := prometheus.NewRegistry()
	// The Go runtime's and the process's own metrics, prefixed so that
	// every metric the service exports is named pyexec_*.
	prometheus.WrapRegistererWithPrefix("pyexec_", reg).MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pyexec_jailed_processes",
			Help: "Processes in the workers' cgroups (nsjail and what it runs); -1 without cgroups.",
		}, func() float64 {
			if n, ok := sp.Processes(); ok {
				return float64(n)
			}
			return -1
		}))
	if m.pool, err = newExecutor(c, sp, spawnHistogram(reg), m.Log.Named("pool")); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	p := m.pool
	reg.MustRegister(newPoolCollector(p.Status))
	p.Start()
	// The first worker may take a whole spawn timeout to get ready.
	wctx, cancel := context.WithTimeout(ctx, max(c.StartupTimeout, c.SpawnTimeout+5*time.Second))
	defer cancel()
	if err := p.WaitReady(wctx); err != nil {
		return fmt.Errorf("start: the sandbox cannot run scripts on this host: %w", err)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(c.Host, c.Port))
	if err != nil {
		return fmt.Errorf("start: listen: %w", err)
	}
	m.Addr, m.ln = ln.Addr().String(), api.NewListener(ln)
	base, cancel := context.WithCancel(context.Background())
	m.cancelRequests = cancel
	app, err := api.New(api.Config{
		MaxScriptBytes: c.MaxScriptBytes,
		BodyLimit:      c.BodyLimit(),
		MaxInputFiles:  c.MaxInputFiles,
		MaxInputBytes:  c.MaxInputBytes,
		DefaultTimeout: c.Timeout,
		MaxTimeout:     c.MaxTimeout,
		APIKey:         c.APIKey,
		RateLimit:      c.RateLimit,
		Metrics:        api.NewMetrics(reg),
		BaseContext:    base,
		TraceProject:   traceProject(ctx, c, m.Log),
		CORSOrigins:    c.CORSOrigins,
	}, m, m.health, m.Log.Named("api"))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	m.app = app
	m.served = make(chan error, 1)
	go func() { m.served <- m.app.Listener(m.ln) }()
	m.Log.Info("serving", zap.String("addr", m.Addr), zap.Int("pool_size", c.PoolSize),
		zap.Stringer("isolation", c.Isolation), zap.Stringer("validation", c.Validation),
		zap.Bool("api_key", c.APIKey != ""))
	return nil
}

// newExecutor builds the warm pool, or the cold executor when the pool
// size is 0.
func newExecutor(c Config, sp *jail.Spawner, onSpawn func(time.Duration, error), log *zap.Logger) (executor, error) {
	spawn := func(ctx context.Context) (pool.Worker, error) {
		var w pool.Worker
		var err error
		if c.Isolation == jail.IsolationFork {
			w, err = forked(sp.Fork(ctx))
		} else {
			w, err = spawned(sp.Spawn(ctx))
		}
		if errors.Is(err, jail.ErrSpawnTimeout) {
			return nil, fmt.Errorf("%w (PYEXEC_SPAWN_TIMEOUT; a slow or busy host needs more)", err)
		}
		return w, err
	}
	// The spawn enforces its own timeout and says so; the pool's is a
	// backstop behind it.
	backstop := c.SpawnTimeout + 10*time.Second
	if c.PoolSize == 0 {
		cold, err := pool.NewCold(pool.ColdConfig{
			Spawn: spawn,
			// A cold request spends most of its time starting a jail,
			// partly waiting on the kernel: two per CPU keep the CPUs
			// busy without queueing work the machine cannot do.
			Concurrency:  2 * runtime.NumCPU(),
			QueueTimeout: c.QueueTimeout,
			SpawnTimeout: backstop,
			OnSpawn:      onSpawn,
		})
		if err != nil {
			return nil, err
		}
		return cold, nil
	}
	warm, err := pool.New(pool.Config{
		Size:         c.PoolSize,
		Spawn:        spawn,
		SpawnTimeout: backstop,
		QueueTimeout: c.QueueTimeout,
		MaxAge:       c.WorkerMaxAge,
		OnSpawn:      onSpawn,
	}, log)
	if err != nil {
		return nil, err
	}
	return warm, nil
}

// spawned and forked keep a nil worker from becoming a non-nil interface.
func spawned(w *jail.Worker, err error) (pool.Worker, error) {
	if err != nil {
		return nil, err
	}
	return w, nil
}

func forked(c *jail.Child, err error) (pool.Worker, error) {
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Execute runs a script on the pool, unless the service is shutting down.
func (m *Main) Execute(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
	if m.draining.Load() {
		return nil, pyexec.Errorf(pyexec.CodeOverloaded, "the service is shutting down")
	}
	return m.pool.Execute(ctx, req)
}

func (m *Main) health() pyexec.Status {
	ps, ready, reason := m.pool.Status()
	if m.draining.Load() {
		ready, reason = false, "shutting down"
	}
	ps.JailedProcesses = -1
	if n, ok := m.spawner.Processes(); ok {
		ps.JailedProcesses = n
	}
	limits := m.spawner.Limits()
	limits.TimeoutDefault = m.Config.Timeout.Seconds()
	limits.TimeoutMax = m.Config.MaxTimeout.Seconds()
	python, packages := m.spawner.Interpreter()
	return pyexec.Status{
		Python:     python,
		Packages:   packages,
		Ready:      ready,
		Reason:     reason,
		Isolation:  m.Config.Isolation.String(),
		Validation: m.Config.Validation.String(),
		Pool:       ps,
		Limits:     limits,
	}
}

// Close stops accepting requests, lets those in flight finish, kills every
// worker and removes the jail's files and cgroups. It returns within about
// the shutdown timeout: just before it ends, running scripts are stopped
// (their clients are told the service is shutting down), and at its end
// every connection still open is cut, a client still sending its request
// included. Safe to call after a failed Run, and more than once.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	var errs []error
	m.draining.Store(true)
	if m.app != nil {
		// Stop accepting first (this also ends the server when Close comes
		// before it has taken the listener), and end the connections that
		// have sent nothing: the server would wait the whole timeout for them.
		_ = m.ln.Close()
		m.ln.CloseUnused()
		limit := m.Config.ShutdownTimeout
		// The scripts still running are stopped a moment before the end,
		// so that their answers are written before the connections go.
		grace := min(250*time.Millisecond, limit/4)
		stopScripts := time.AfterFunc(limit-grace, m.cancelRequests)
		cut := time.AfterFunc(limit, func() { m.ln.CloseAll() })
		if err := m.app.ShutdownWithTimeout(limit); err != nil {
			m.Log.Warn("connections still open at shutdown", zap.Error(err))
		}
		stopScripts.Stop()
		cut.Stop()
		m.cancelRequests()
		// Whatever the shutdown gave up on is cut, so that nothing is
		// served once Close returns.
		m.ln.CloseAll()
		if err := <-m.served; err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	} else if m.ln != nil {
		_ = m.ln.Close()
	}
	// The pool and the spawner stay set: a handler the shutdown gave up on
	// may still call the pool, which refuses work once closed.
	if m.pool != nil {
		m.pool.Close()
	}
	if m.spawner != nil {
		m.spawner.Close()
	}
	if m.debug != nil {
		m.debug.close()
	}
	if m.Log != nil {
		_ = m.Log.Sync()
	}
	return errors.Join(errs...)
}

// newLogger writes JSON lines to w that Cloud Logging reads as structured
// entries: "severity" with its level names, "message", "time", and the
// caller as "logging.googleapis.com/sourceLocation".
func newLogger(lvl zapcore.Level, w zapcore.WriteSyncer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	enc.MessageKey = "message"
	enc.LevelKey = "severity"
	enc.EncodeLevel = cloudSeverity
	enc.StacktraceKey = ""
	enc.CallerKey = zapcore.OmitKey
	core := sourceLocationCore{zapcore.NewCore(zapcore.NewJSONEncoder(enc), w, lvl)}
	return zap.New(core, zap.AddCaller())
}

func cloudSeverity(l zapcore.Level, enc zapcore.PrimitiveArrayEncoder) {
	switch l {
	case zapcore.DebugLevel:
		enc.AppendString("DEBUG")
	case zapcore.InfoLevel:
		enc.AppendString("INFO")
	case zapcore.WarnLevel:
		enc.AppendString("WARNING")
	case zapcore.ErrorLevel:
		enc.AppendString("ERROR")
	case zapcore.FatalLevel:
		enc.AppendString("ALERT")
	default:
		enc.AppendString("CRITICAL")
	}
}

// logCapabilities writes one line saying what the host allows the sandbox.
func logCapabilities(log *zap.Logger, caps []jail.Capability) {
	fields := make([]zap.Field, 0, len(caps))
	missing := 0
	for _, c := range caps {
		v := "yes"
		if !c.OK {
			v = "no"
			missing++
		}
		if c.Detail != "" {
			v += " (" + c.Detail + ")"
		}
		fields = append(fields, zap.String(c.Name, v))
	}
	if missing > 0 {
		log.Warn("sandbox capabilities", fields...)
		return
	}
	log.Info("sandbox capabilities", fields...)
}
