package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"
)

// debugServer serves Go's profiler on a loopback address (PYEXEC_DEBUG_ADDR),
// for `go tool pprof http://127.0.0.1:6060/debug/pprof/profile`. It is off
// unless configured, and Config.Validate refuses any address that is not
// loopback: profiles show the service's internals.
type debugServer struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

func startDebug(addr string, log *zap.Logger) (*debugServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d := &debugServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug listener stopped", zap.Error(err))
		}
	}()
	log.Info("profiler listening", zap.String("addr", d.addr))
	return d, nil
}

func (d *debugServer) close() {
	_ = d.srv.Close()
	<-d.done
}
