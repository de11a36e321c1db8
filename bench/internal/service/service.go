// Package service starts a pyexecd binary on loopback for the benchmark and
// soak programs, and reads what the service says about itself.
package service

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Service is one running pyexecd.
type Service struct {
	Cmd *exec.Cmd
	URL string
	// Exited is closed when the process ends; Err then holds its status.
	Exited chan struct{}
	Err    error
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

// Start runs bin on a free loopback port with the given interpreter and
// extra environment, and waits until /health answers 200.
func Start(bin, python string, env []string) (*Service, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	python, err = filepath.Abs(python)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "PYEXEC_HOST=127.0.0.1",
		"PYEXEC_PYTHON="+python, "PYEXEC_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start service: %w", err)
	}
	s := &Service{Cmd: cmd, URL: "http://127.0.0.1:" + port, Exited: make(chan struct{})}
	go func() { s.Err = cmd.Wait(); close(s.Exited) }()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.Exited:
			return nil, fmt.Errorf("start service: exited: %v", s.Err)
		default:
		}
		if res, err := http.Get(s.URL + "/health"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return s, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	return nil, errors.New("start service: not healthy within 2 minutes")
}

// Stop sends SIGTERM and waits (SIGKILL after a minute). It returns the
// process's exit error, nil for a clean exit.
func (s *Service) Stop() error {
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.Exited:
	case <-time.After(time.Minute):
		_ = s.Cmd.Process.Kill()
		<-s.Exited
	}
	return s.Err
}

// Metrics scrapes /metrics into name{labels} -> value.
func (s *Service) Metrics() (map[string]float64, error) {
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// BusySeconds is the CPU time the whole machine has spent busy (all but
// idle and iowait), from /proc/stat.
func BusySeconds() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	var busy float64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, _ := strconv.ParseFloat(f, 64)
		busy += v
	}
	return busy / 100 // USER_HZ is 100 on Linux
}
