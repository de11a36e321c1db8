package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// bareForkPy is the floor's measurement, run with the jail's interpreter.
//
//go:embed barefork.py
var bareForkPy string

// bareFork is the CPU cost of a bare fork of the jail's interpreter with
// numpy and pandas imported: the physical floor under fork isolation's
// CPU per script.
type bareFork struct {
	Forks  int     // forks in each round
	Rounds int     // rounds measured
	CPU    float64 // CPU-seconds per fork, median of the rounds
	Wall   float64 // wall seconds per fork in that round
}

// bareForkEnv is the environment of the measurement: one BLAS thread, as
// the jail sets, so that the forked process is the one the zygote forks.
var bareForkEnv = []string{"PATH=/usr/bin:/bin", "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1"}

// measureBareFork runs the measurement rounds times, each in a fresh
// interpreter making forks forks, and keeps the median round by CPU.
func measureBareFork(ctx context.Context, python string, forks, rounds int, modules string) (bareFork, error) {
	type round struct{ cpu, wall float64 }
	var rs []round
	for i := 0; i < rounds; i++ {
		cmd := exec.CommandContext(ctx, python, "-I", "-c", bareForkPy, strconv.Itoa(forks), modules)
		cmd.Env = bareForkEnv
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = strings.TrimSpace(string(ee.Stderr))
			}
			return bareFork{}, fmt.Errorf("bare fork: %w: %s", err, stderr)
		}
		n, cpu, wall, err := parseBareFork(out)
		if err != nil {
			return bareFork{}, err
		}
		if n != forks {
			return bareFork{}, fmt.Errorf("bare fork: made %d forks, asked for %d", n, forks)
		}
		rs = append(rs, round{cpu / float64(n), wall / float64(n)})
	}
	if len(rs) == 0 {
		return bareFork{}, fmt.Errorf("bare fork: no rounds")
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].cpu < rs[j].cpu })
	m := rs[(len(rs)-1)/2]
	return bareFork{Forks: forks, Rounds: len(rs), CPU: m.cpu, Wall: m.wall}, nil
}

// parseBareFork reads barefork.py's line: forks made, their CPU-seconds
// and wall seconds in all.
func parseBareFork(out []byte) (forks int, cpu, wall float64, err error) {
	var v struct {
		Forks int      `json:"forks"`
		CPU   *float64 `json:"cpu_s"`
		Wall  *float64 `json:"wall_s"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return 0, 0, 0, fmt.Errorf("bare fork: %w: %q", err, out)
	}
	if v.Forks <= 0 || v.CPU == nil || v.Wall == nil || *v.CPU <= 0 || *v.Wall <= 0 {
		return 0, 0, 0, fmt.Errorf("bare fork: no forks or no times measured: %q", out)
	}
	return v.Forks, *v.CPU, *v.Wall, nil
}
