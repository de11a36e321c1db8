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
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
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

	spawner *jail.Spawner
	pool    *pool.Pool
	app     *fiber.App
	served  chan error
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
		log, err := newLogger(c.LogLevel)
		if err != nil {
			return err
		}
		m.Log = log
	}
	sp, err := jail.NewSpawner(jail.Config{
		PythonPath:     c.Python,
		NsjailPath:     c.Nsjail,
		MemoryMB:       c.MemoryMB,
		PidsMax:        c.PidsMax,
		TmpfsMB:        c.TmpfsMB,
		Cgroup:         c.Cgroup,
		MaxOutputBytes: c.MaxOutputBytes,
		MaxScriptBytes: c.MaxScriptBytes,
		Validation:     c.Validation,
		MaxLifetime:    c.WorkerMaxAge + 5*time.Minute,
	}, m.Log.Named("jail"))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	m.spawner = sp
	p, err := pool.New(pool.Config{
		Size:         c.PoolSize,
		Spawn:        func(ctx context.Context) (pool.Worker, error) { return sp.Spawn(ctx) },
		QueueTimeout: c.QueueTimeout,
		MaxAge:       c.WorkerMaxAge,
	}, m.Log.Named("pool"))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	m.pool = p
	p.Start()
	wctx, cancel := context.WithTimeout(ctx, c.StartupTimeout)
	defer cancel()
	if err := p.WaitReady(wctx); err != nil {
		return fmt.Errorf("start: the sandbox cannot run scripts on this host: %w", err)
	}

	m.app = api.New(api.Config{
		MaxScriptBytes: c.MaxScriptBytes,
		DefaultTimeout: c.Timeout,
		MaxTimeout:     c.MaxTimeout,
		APIKey:         c.APIKey,
	}, p, m.health, m.Log.Named("api"))
	ln, err := net.Listen("tcp", net.JoinHostPort(c.Host, c.Port))
	if err != nil {
		return fmt.Errorf("start: listen: %w", err)
	}
	m.Addr = ln.Addr().String()
	m.served = make(chan error, 1)
	go func() { m.served <- m.app.Listener(ln) }()
	m.Log.Info("serving", zap.String("addr", m.Addr), zap.Int("pool_size", c.PoolSize),
		zap.String("isolation", c.Isolation), zap.String("validation", c.Validation),
		zap.Bool("api_key", c.APIKey != ""))
	return nil
}

func (m *Main) health() pyexec.Status {
	ps, ready, reason := m.pool.Status()
	limits := m.spawner.Limits()
	limits.TimeoutDefault = m.Config.Timeout.Seconds()
	limits.TimeoutMax = m.Config.MaxTimeout.Seconds()
	return pyexec.Status{
		Ready:      ready,
		Reason:     reason,
		Isolation:  m.Config.Isolation,
		Validation: m.Config.Validation,
		Pool:       ps,
		Limits:     limits,
	}
}

// Close stops accepting requests, lets those in flight finish (each is
// bounded by its timeout), kills every worker and removes the jail's files
// and cgroups. Safe to call after a failed Run.
func (m *Main) Close() error {
	var errs []error
	if m.app != nil {
		if err := m.app.ShutdownWithTimeout(m.Config.MaxTimeout + 5*time.Second); err != nil {
			errs = append(errs, err)
		}
		if err := <-m.served; err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		m.app = nil
	}
	if m.pool != nil {
		m.pool.Close()
		m.pool = nil
	}
	if m.spawner != nil {
		m.spawner.Close()
		m.spawner = nil
	}
	if m.Log != nil {
		_ = m.Log.Sync()
	}
	return errors.Join(errs...)
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("PYEXEC_LOG_LEVEL=%q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.DisableStacktrace = true
	return cfg.Build()
}
