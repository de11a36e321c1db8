// Command bench is pyexec's load benchmark. It speaks only HTTP to a running
// service:
//
//	go run ./bench -url http://127.0.0.1:8080 -scenario hello -c 8 -d 30s
//	go run ./bench -scenario pandas -c 1 -rate 2 -n 50 -json
//	go run ./bench -script my.py -c 4 -n 200
//
// Every answer is checked; a wrong result counts as a failure.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/pyexec/pyexec/bench/load"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "service base URL")
	key := fs.String("key", os.Getenv("PYEXEC_API_KEY"), "API key (default $PYEXEC_API_KEY)")
	scenario := fs.String("scenario", "hello", "built-in scenario: "+strings.Join(load.Names(), ", "))
	script := fs.String("script", "", "run this script file instead of a built-in scenario")
	timeout := fs.Float64("timeout", 0, "script timeout in seconds for -script (0: the service default)")
	conc := fs.Int("c", 1, "concurrent clients")
	n := fs.Int("n", 0, "number of requests (0: bounded by -d)")
	dur := fs.Duration("d", 10*time.Second, "duration (0: bounded by -n)")
	rate := fs.Float64("rate", 0, "open-loop rate in requests/s (0: closed loop)")
	think := fs.Duration("think", 0, "closed loop: pause after each answer")
	warmup := fs.Int("warmup", 0, "unmeasured requests sent first")
	waitIdle := fs.Bool("wait-idle", true, "wait until every pool worker is idle before measuring")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n <= 0 && *dur <= 0 {
		fmt.Fprintln(os.Stderr, "bench: set -n or -d")
		return 2
	}
	sc, ok := load.Lookup(*scenario)
	if *script != "" {
		var err error
		if sc, err = load.FromFile(*script, *timeout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
	} else if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (have %s)\n", *scenario, strings.Join(load.Names(), ", "))
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *waitIdle {
		if err := load.WaitIdle(ctx, *url, 2*time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
	}
	rep, err := load.Run(ctx, sc, load.Options{
		URL: *url, APIKey: *key, Concurrency: *conc, Requests: *n, Duration: *dur,
		Rate: *rate, Think: *think, Warmup: *warmup, Progress: os.Stderr,
		Terminal: isatty.IsTerminal(os.Stderr.Fd()),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Print(rep.Format())
	}
	if rep.Wrong > 0 {
		return 1
	}
	return 0
}
