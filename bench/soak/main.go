// Command soak runs the reliability check behind docs/RELIABILITY.md: the
// adversarial test suite (its outcomes become the attack table), then a
// long mixed load against a fresh service (10,000 requests at concurrency
// 8, 70% normal and 30% abusive), comparing what the service reports about
// itself before and after. `make soak` runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pyexec/pyexec/bench/internal/service"
	"github.com/pyexec/pyexec/bench/load"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// snapshot is what the service says about itself at one moment.
type snapshot struct {
	Goroutines float64
	OpenFDs    float64
	HeapBytes  float64
	RSSBytes   float64
	Jailed     int
	Idle       int
}

type attackRow struct {
	Mode    string `json:"mode"`
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Got     string `json:"got"`
	Passed  bool   `json:"passed"`
}

func run() error {
	bin := flag.String("bin", "bin/pyexecd", "service binary")
	python := flag.String("python", ".venv/bin/python", "interpreter for the jail")
	n := flag.Int("n", 10000, "requests")
	conc := flag.Int("c", 8, "concurrent clients")
	out := flag.String("out", "docs/RELIABILITY.md", "report to write")
	skipAttacks := flag.Bool("skip-attacks", false, "do not rerun the adversarial suite")
	isolation := flag.String("isolation", "fork", "isolation mode of the soaked service: fork (the default) or strict")
	flag.Parse()
	ctx := context.Background()

	var attacks []attackRow
	if !*skipAttacks {
		fmt.Fprintln(os.Stderr, "== adversarial suite")
		rows, err := runAttacks(*python)
		if err != nil {
			return err
		}
		attacks = rows
	}

	fmt.Fprintln(os.Stderr, "== soak")
	svc, err := service.Start(*bin, *python, []string{"PYEXEC_ISOLATION=" + *isolation})
	if err != nil {
		return err
	}
	before, err := settle(ctx, svc)
	if err != nil {
		svc.Stop()
		return err
	}
	sc, _ := load.Lookup("abuse")
	start := time.Now()
	rep, err := load.Run(ctx, sc, load.Options{URL: svc.URL, Concurrency: *conc, Requests: *n, Progress: os.Stderr, HTTPTimeout: 2 * time.Minute})
	if err != nil {
		svc.Stop()
		return err
	}
	elapsed := time.Since(start)
	crashed := false
	select {
	case <-svc.Exited:
		crashed = true
	default:
	}
	var after snapshot
	if !crashed {
		if after, err = settle(ctx, svc); err != nil {
			svc.Stop()
			return err
		}
	}
	stopErr := svc.Stop()
	leftover := jailedLeft()

	command := "make soak"
	if *isolation != "fork" || *n != 10000 || *conc != 8 {
		command = fmt.Sprintf("make soak SOAK_FLAGS='-isolation %s -n %d -c %d'", *isolation, *n, *conc)
	}
	doc := render(attacks, rep, before, after, crashed, stopErr, leftover, elapsed, *n, *conc, *isolation, command)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "wrote", *out)
	if crashed || rep.Wrong > 0 || rep.Errors > 0 || after.Jailed > 3*after.Idle || leftover > 0 {
		return fmt.Errorf("the soak found problems; see %s", *out)
	}
	return nil
}

// runAttacks runs the adversarial suite through go test and reads the
// outcome of every attack.
func runAttacks(python string) ([]attackRow, error) {
	tmp, err := os.CreateTemp("", "pyexec-attacks-*.json")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	abs, err := filepath.Abs(python)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "test", "-count=1", "-run", "TestAttacks", "./cmd/pyexecd")
	cmd.Env = append(os.Environ(), "PYEXEC_PYTHON="+abs, "PYEXEC_ATTACK_REPORT="+tmp.Name(), "CI=true")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	testErr := cmd.Run()
	var rows []attackRow
	for _, mode := range []string{"strict", "fork"} {
		data, err := os.ReadFile(tmp.Name() + "." + mode)
		if err != nil || len(data) == 0 {
			return nil, fmt.Errorf("adversarial suite wrote no report for %s (%v)", mode, testErr)
		}
		os.Remove(tmp.Name() + "." + mode)
		var part []attackRow
		if err := json.Unmarshal(data, &part); err != nil {
			return nil, err
		}
		rows = append(rows, part...)
	}
	if testErr != nil {
		return rows, fmt.Errorf("adversarial suite failed: %w", testErr)
	}
	return rows, nil
}

// settle waits for a full idle pool, then reads the service's state.
func settle(ctx context.Context, svc *service.Service) (snapshot, error) {
	if err := load.WaitIdle(ctx, svc.URL, 3*time.Minute); err != nil {
		return snapshot{}, err
	}
	// Let finished requests wind down: fasthttp keeps a worker goroutine
	// after its connection closes and reaps those idle for over 10 s every
	// 10 s, so one may stay up to 20 s, and would be counted as a leak.
	time.Sleep(22 * time.Second)
	m, err := svc.Metrics()
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{
		Goroutines: m["pyexec_go_goroutines"],
		OpenFDs:    m["pyexec_process_open_fds"],
		HeapBytes:  m["pyexec_go_memstats_heap_alloc_bytes"],
		RSSBytes:   m["pyexec_process_resident_memory_bytes"],
		Jailed:     int(m["pyexec_jailed_processes"]),
		Idle:       int(m[`pyexec_pool_workers{state="idle"}`]),
	}, nil
}

// jailedLeft counts processes still running as the jail's user on the
// host after the service has stopped. Killed processes take a moment to be
// torn down (and zombies are already dead), so it polls for up to 5 s.
func jailedLeft() int {
	n := 0
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n = countJailed()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
	}
}

func countJailed() int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var uid, state string
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) > 1 && f[0] == "Uid:":
				uid = f[1]
			case len(f) > 1 && f[0] == "State:":
				state = f[1]
			}
		}
		if uid == "65534" && state != "Z" && state != "X" {
			n++
		}
	}
	return n
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func render(attacks []attackRow, rep *load.Report, before, after snapshot, crashed bool, stopErr error,
	leftover int, elapsed time.Duration, n, conc int, isolation, command string) string {
	var b strings.Builder
	b.WriteString("# Reliability\n\n")
	fmt.Fprintf(&b, "Generated by `%s` (`go run ./bench/soak`), which runs the adversarial suite\n", command)
	b.WriteString("(`TestAttacks_MinimalValidation` in `cmd/pyexecd/attack_test.go`, also part of `make test`) and then a\n")
	b.WriteString("soak against a fresh service. Everything here holds with `PYEXEC_VALIDATION=minimal`: validation\n")
	b.WriteString("is not the security boundary, the jail is.\n\n")
	fmt.Fprintf(&b, "Machine: %d cores, %s; run at %s.\n\n", runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"))

	b.WriteString(trustBoundaries)
	b.WriteString("## Attacks\n\n")
	b.WriteString("Each attack runs as a script; \"got\" is what the attacker obtained, \"outcome\" the error type the\n")
	b.WriteString("service answered with. After every attack a normal request must succeed, and at the end no jailed\n")
	b.WriteString("process may be left beyond the warm pool.\n\n")
	b.WriteString("| attack | strict: outcome | fork: outcome | attacker got | held |\n|---|---|---|---|---|\n")
	byName := map[string]map[string]attackRow{}
	var names []string
	for _, a := range attacks {
		if byName[a.Name] == nil {
			byName[a.Name] = map[string]attackRow{}
			names = append(names, a.Name)
		}
		byName[a.Name][a.Mode] = a
	}
	for _, name := range names {
		st, fk := byName[name]["strict"], byName[name]["fork"]
		held := "yes"
		if !st.Passed || !fk.Passed {
			held = "**no**"
		}
		got := st.Got
		if fk.Got != st.Got {
			got = "strict: " + st.Got + "; fork: " + fk.Got
		}
		fmt.Fprintf(&b, "| %s | `%s` | `%s` | %s | %s |\n", name, st.Outcome, fk.Outcome, got, held)
	}
	b.WriteString("\n")

	b.WriteString("## Faults\n\n")
	b.WriteString("| fault | what happens | shown by |\n|---|---|---|\n")
	faults := [][3]string{
		{"Python or nsjail missing or not executable at start-up", "the service says which path and why, and exits non-zero before listening", "`TestRun_FailsClearlyWithoutASandbox`, `TestNewSpawner_RefusesBadConfig`"},
		{"workers cannot be spawned", "`/health` answers 503 with the reason; refills back off exponentially (100 ms up to 10 s), so a broken host is not hammered", "`TestPool_SpawnFailuresMakeItUnreadyAndBackOff`"},
		{"a worker killed from outside mid-run", "that request gets `sandbox_error`; the pool refills", "`TestWorker_KilledFromOutsideMidRunIsSandboxError`, `TestE2E_WorkerKilledFromOutside`"},
		{"an idle worker dies", "it is noticed on acquisition or by the maintenance loop and replaced; no request sees it", "`TestPool_DeadIdleWorkerIsReplaced`"},
		{"a client disconnects mid-run", "its worker is killed at once and replaced", "`TestE2E_ClientDisconnectKillsTheWorker`"},
		{"the pool is exhausted", "`overloaded` (503 + `Retry-After`) after the queue timeout; queued requests are served in arrival order", "`TestE2E_OverloadedWhenEveryWorkerIsBusy`, `TestPool_QueuedRequestsAreServedInOrder`"},
		{"SIGTERM", "`/health` turns 503, new scripts get `overloaded`, requests in flight finish within `PYEXEC_SHUTDOWN_TIMEOUT` (scripts still running then are stopped and answered `overloaded`, connections still open are cut), every jailed process is killed, exit 0", "`TestE2E_ShutdownFinishesInFlightAndLeavesNothing`, `TestE2E_ShutdownEndsConnectionsWithoutARequest`, `TestE2E_SIGTERM`"},
		{"the port is taken at start-up", "`Run` fails saying so; `Close` tears down the pool, the jail's files and cgroups", "`TestE2E_CloseAfterAFailedListen`"},
		{"a worker slower to start than `PYEXEC_SPAWN_TIMEOUT`", "start-up fails with a message naming the variable", "`TestRun_SpawnTimeoutNamesItsVariable`"},
		{"SIGKILL, then a restart in a cgroup shared with other processes (a container)", "the restart sits at the same cgroup depth, the dead instance's cgroups and jailed processes are removed, the other processes keep their limits; a clean exit leaves the cgroup as it was (on v1 here, on v2 in a VM)", "`TestE2E_RestartInASharedCgroup`"},
		{"a jailed process closes its protocol channel and stays alive", "the worker is killed at once; that request gets `sandbox_error`", "`TestWorker_ClosedChannelEndsTheWorkerAtOnce`"},
		{"garbage on the protocol, over-long lines, early EOF", "`sandbox_error` for that request; the codec stays in step", "`TestLineReader_*`, `FuzzLineReader`, `FuzzDecodeReply`"},
		{"malformed request bodies", "`invalid_request`, never a crash", "`FuzzDecodeRequest`"},
	}
	for _, f := range faults {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", f[0], f[1], f[2])
	}
	b.WriteString("\n")

	b.WriteString("## Soak\n\n")
	fmt.Fprintf(&b, "%d requests at concurrency %d, the `abuse` scenario of the load tool (%s), against\n", n, conc, strings.TrimSuffix(scenarioDescription(), "."))
	fmt.Fprintf(&b, "a service with the default configuration in `%s` isolation; %.0f s in all (%.1f requests/s).\n\n", isolation, elapsed.Seconds(), rep.Throughput)
	b.WriteString("| | value |\n|---|---|\n")
	crashes := 0
	if crashed {
		crashes = 1
	}
	fmt.Fprintf(&b, "| service crashes | %d |\n", crashes)
	fmt.Fprintf(&b, "| wrong results | %d (of %d answers checked; %d transport errors) |\n", rep.Wrong, rep.Requests, rep.Errors)
	fmt.Fprintf(&b, "| outcomes | %s |\n", counts(rep.ByType))
	if isolation == "fork" {
		// One process per idle child, plus the jail's nsjail and zygote.
		fmt.Fprintf(&b, "| jailed processes after the soak, pool idle | %d (%d idle children, nsjail and the zygote) |\n", after.Jailed, after.Idle)
	} else {
		fmt.Fprintf(&b, "| jailed processes after the soak, pool idle | %d (%d idle workers × 2: nsjail and the interpreter) |\n", after.Jailed, after.Idle)
	}
	fmt.Fprintf(&b, "| jailed processes left after the service stopped | %d |\n", leftover)
	fmt.Fprintf(&b, "| service exit after SIGTERM | %s |\n", exitText(stopErr))
	fmt.Fprintf(&b, "| goroutines, start → end | %.0f → %.0f |\n", before.Goroutines, after.Goroutines)
	fmt.Fprintf(&b, "| open fds, start → end | %.0f → %.0f |\n", before.OpenFDs, after.OpenFDs)
	fmt.Fprintf(&b, "| Go heap, start → end | %s → %s |\n", mib(before.HeapBytes), mib(after.HeapBytes))
	fmt.Fprintf(&b, "| service RSS, start → end | %s → %s |\n", mib(before.RSSBytes), mib(after.RSSBytes))
	fmt.Fprintf(&b, "| latency p50 / p99 / max | %.0f ms / %.0f ms / %.0f ms |\n", rep.Latency.P50, rep.Latency.P99, rep.Latency.Max)
	for _, f := range rep.Failures {
		fmt.Fprintf(&b, "\nFailure: %s\n", f)
	}
	return b.String()
}

func scenarioDescription() string {
	sc, _ := load.Lookup("abuse")
	return sc.Description
}

func exitText(err error) string {
	if err == nil {
		return "clean (status 0)"
	}
	return err.Error()
}

func counts(m map[string]int) string {
	var parts []string
	for _, k := range []string{"ok", "memory_limit", "timeout", "sandbox_error", "runtime_error", "output_limit", "overloaded"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	return strings.Join(parts, ", ")
}
