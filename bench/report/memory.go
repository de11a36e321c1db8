package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/pyexec/pyexec/bench/internal/service"
)

// idleMemory is the idle-memory subcommand: it starts each binary in turn
// on loopback, waits for its pool to be idle and measures the proportional
// set size of each worker (nsjail, its interpreter and any pre-forked
// child), alternating the binaries run after run so that a drift of the
// machine affects them alike. It prints a table, per binary, of each run's
// median over the workers.
func idleMemory(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("idle-memory", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./bench/report idle-memory [flags] BIN...")
		fs.PrintDefaults()
	}
	python := fs.String("python", ".venv/bin/python", "interpreter for the jail")
	runs := fs.Int("runs", 3, "runs of each binary (1-10)")
	pool := fs.Int("pool", 2, "PYEXEC_POOL_SIZE (1-16)")
	isolation := fs.String("isolation", "strict", "PYEXEC_ISOLATION")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bins := fs.Args()
	switch {
	case len(bins) == 0:
		fs.Usage()
		return errors.New("idle-memory: name at least one binary")
	case *runs < 1 || *runs > 10:
		return fmt.Errorf("idle-memory: -runs %d is not in 1-10", *runs)
	case *pool < 1 || *pool > 16:
		return fmt.Errorf("idle-memory: -pool %d is not in 1-16", *pool)
	}
	env := []string{fmt.Sprintf("PYEXEC_POOL_SIZE=%d", *pool), "PYEXEC_ISOLATION=" + *isolation}
	perRun := make([][]int, len(bins))
	for r := 0; r < *runs; r++ {
		for i, bin := range bins {
			kb, err := idleWorkerPss(bin, *python, env, *pool, *isolation)
			if err != nil {
				return fmt.Errorf("idle-memory: %s, run %d: %w", bin, r+1, err)
			}
			fmt.Fprintf(os.Stderr, "%s run %d: workers' PSS %v KiB\n", bin, r+1, kb)
			perRun[i] = append(perRun[i], median(kb))
		}
	}
	fmt.Fprint(stdout, memoryTable(bins, perRun, *pool, *isolation))
	return nil
}

// idleWorkerPss starts bin, measures its idle workers and stops it. In
// fork isolation the one "worker" is the zygote's nsjail with the zygote
// and its pool of children.
func idleWorkerPss(bin, python string, env []string, pool int, isolation string) ([]int, error) {
	svc, err := service.Start(bin, python, env)
	if err != nil {
		return nil, err
	}
	fp, err := idleFootprint(context.Background(), svc)
	if stopErr := svc.Stop(); err == nil && stopErr != nil {
		err = fmt.Errorf("stop: %w", stopErr)
	}
	if err != nil {
		return nil, err
	}
	jails, children := pool, 0
	if isolation == "fork" {
		jails, children = 1, pool
	}
	if len(fp.WorkerPssKB) != jails || fp.Children != children {
		return nil, fmt.Errorf("found %d jails and %d children below them, want %d and %d", len(fp.WorkerPssKB), fp.Children, jails, children)
	}
	return fp.WorkerPssKB, nil
}

// median of xs, the lower middle one for an even count; 0 for none.
func median(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int(nil), xs...)
	sort.Ints(s)
	return s[(len(s)-1)/2]
}

// memoryTable renders, per binary, each run's median worker PSS and the
// median of the runs, in MiB.
func memoryTable(bins []string, perRun [][]int, pool int, isolation string) string {
	var b strings.Builder
	runs := 0
	if len(perRun) > 0 {
		runs = len(perRun[0])
	}
	if isolation == "fork" {
		fmt.Fprintf(&b, "Idle pool PSS (MiB; the zygote's nsjail, the zygote and its %d children; fork isolation)\n\n| binary |", pool)
	} else {
		fmt.Fprintf(&b, "Idle worker PSS (MiB; median of the %d workers; %s isolation)\n\n| binary |", pool, isolation)
	}
	for r := 1; r <= runs; r++ {
		fmt.Fprintf(&b, " run %d |", r)
	}
	b.WriteString(" median |\n|---|" + strings.Repeat("---|", runs+1) + "\n")
	for i, bin := range bins {
		fmt.Fprintf(&b, "| %s |", bin)
		for _, kb := range perRun[i] {
			fmt.Fprintf(&b, " %.1f |", float64(kb)/1024)
		}
		fmt.Fprintf(&b, " **%.1f** |\n", float64(median(perRun[i]))/1024)
	}
	return b.String()
}
