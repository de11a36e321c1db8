// Command report runs the benchmark behind docs/BENCHMARKS.md: it times a
// bare fork of the jail's interpreter (the floor under fork isolation's CPU
// per script), starts the service on loopback, as the cold baseline
// (strict isolation with PYEXEC_POOL_SIZE=0, a fresh jail and interpreter per request), in the
// default strict isolation and in fork isolation, measures each idle pool,
// drives each with the same scenarios through bench/load (one client with
// pauses and back to back, 8 clients, open-loop rates in fork isolation),
// cross-checks one run with wrk, and writes the report and its chart. It
// speaks only HTTP to the service; what one spawn costs alone comes from
// package jail's BenchmarkSpawn, whose output `make bench` passes in with
// -spawn-bench. `make bench` runs it.
//
// `go run ./bench/report idle-memory BIN...` only measures the idle
// workers' memory of one or more binaries, alternating them (see memory.go).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/bench/internal/service"
	"github.com/pyexec/pyexec/bench/load"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "idle-memory" {
		if err := idleMemory(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// plan is one measured run of a scenario.
type plan struct {
	Scenario string
	// Kind is "latency" (one client with a pause after each answer),
	// "backtoback" (one client, no pause), "throughput" (8 clients) or
	// "rate" (open loop, fork mode only).
	Kind string
	Rate float64 // "rate": open loop at this many requests/s
	// Requests is a back-to-back run's length with a warm pool (cold
	// runs make settings.coldLatN).
	Requests int
}

type settings struct {
	bin, python, out, chart, wrk, spawnBench string
	latN, coldLatN                           int
	// b2bMax caps the back-to-back runs' length (0: as planned).
	b2bMax          int
	think           time.Duration
	thrDur, rateDur time.Duration
}

// backToBackWarmup requests open each back-to-back run, unmeasured, as
// the README's `go run ./bench -c 1 -n 200 -d 0 -warmup 3` does.
const backToBackWarmup = 3

func run() error {
	var s settings
	flag.StringVar(&s.bin, "bin", "bin/pyexecd", "service binary")
	flag.StringVar(&s.python, "python", ".venv/bin/python", "interpreter for the jail")
	flag.StringVar(&s.out, "out", "docs/BENCHMARKS.md", "report to write")
	flag.StringVar(&s.chart, "chart", "docs/bench-latency.svg", "chart to write")
	flag.StringVar(&s.wrk, "wrk", "wrk", "wrk binary for the cross-check (empty: skip)")
	flag.StringVar(&s.spawnBench, "spawn-bench", "", "output of go test -bench '^BenchmarkSpawn$' ./jail (empty: no spawn-only rows)")
	quick := flag.Bool("quick", false, "short runs, to try the pipeline")
	flag.Parse()
	s.latN, s.coldLatN, s.think, s.thrDur, s.rateDur = 40, 12, 500*time.Millisecond, 20*time.Second, 10*time.Second
	if *quick {
		s.latN, s.coldLatN, s.think, s.thrDur, s.rateDur = 5, 3, 300*time.Millisecond, 3*time.Second, 3*time.Second
		s.b2bMax = 10
	}
	ctx := context.Background()

	facts := machineFacts()
	plans := benchPlans()
	res := &results{facts: facts, settings: s, runs: map[string]map[string]*load.Report{},
		cpu: map[string]map[string]float64{}, rates: map[string][]*load.Report{}}
	var err error
	if s.spawnBench != "" {
		data, err := os.ReadFile(s.spawnBench)
		if err != nil {
			return err
		}
		if res.spawnRate, res.spawnCPUConc, err = parseSpawnBench(string(data)); err != nil {
			return fmt.Errorf("%s: %w", s.spawnBench, err)
		}
	}
	// The floor under fork isolation's CPU per script, measured first,
	// with no service running.
	forks := bareForks
	if *quick {
		forks = 100
	}
	fmt.Fprintf(os.Stderr, "== bare fork\n")
	if res.bareFork, err = measureBareFork(ctx, s.python, forks, bareForkRounds, "numpy,pandas"); err != nil {
		return err
	}
	res.footprints = map[string]footprint{}
	for _, mode := range []string{"cold", "strict", "fork"} {
		fmt.Fprintf(os.Stderr, "== %s mode\n", mode)
		res.speed = append(res.speed, checkSpeed(ctx, mode, s.python))
		// The cold baseline is a fresh jail and interpreter per request:
		// strict isolation without a pool.
		env := []string{"PYEXEC_ISOLATION=strict"}
		switch mode {
		case "cold":
			env = append(env, "PYEXEC_POOL_SIZE=0")
		case "fork":
			env = []string{"PYEXEC_ISOLATION=fork"}
		}
		svc, err := service.Start(s.bin, s.python, env)
		if err != nil {
			return err
		}
		res.runs[mode] = map[string]*load.Report{}
		res.cpu[mode] = map[string]float64{}
		if mode != "cold" {
			fp, err := idleFootprint(ctx, svc)
			if err != nil {
				svc.Stop()
				return err
			}
			res.footprints[mode] = fp
		}
		for _, p := range plans {
			if p.Kind == "rate" {
				if mode == "fork" {
					if err := rateRuns(ctx, svc.URL, p, s.rateDur, res); err != nil {
						svc.Stop()
						return err
					}
				}
				continue
			}
			opt := runOptions(s, mode, p)
			opt.URL, opt.Progress = svc.URL, os.Stderr
			sc, _ := load.Lookup(p.Scenario)
			if err := load.WaitIdle(ctx, svc.URL, 2*time.Minute); err != nil {
				svc.Stop()
				return err
			}
			cpu0 := service.BusySeconds()
			rep, err := load.Run(ctx, sc, opt)
			if err != nil {
				svc.Stop()
				return err
			}
			// Every script uses up a worker (a child in fork isolation),
			// so a script's CPU includes making its replacement: the
			// machine's busy time counts until the pool is full again and
			// what follows (a child's warm-up, the kernel tearing down
			// namespaces) is done.
			if err := load.WaitIdle(ctx, svc.URL, 2*time.Minute); err != nil {
				svc.Stop()
				return err
			}
			settle(service.BusySeconds, time.Sleep)
			key := p.Kind + "/" + p.Scenario
			res.cpu[mode][key] = (service.BusySeconds() - cpu0) / float64(rep.Requests+int64(opt.Warmup))
			if mode == "cold" && key == "latency/hello" {
				res.spawnCPU = res.cpu[mode][key]
				res.spawnWall = rep.Latency.P50 / 1000
			}
			fmt.Fprintf(os.Stderr, "%s %s: %s", mode, p.Kind, rep.Format())
			res.runs[mode][key] = rep
		}
		svc.Stop()
	}
	res.speed = append(res.speed, checkSpeed(ctx, "end", s.python))
	if s.wrk != "" {
		if err := crossCheck(ctx, s, res); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(s.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(s.chart, []byte(renderChart(res)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(s.out, []byte(renderReport(res)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %s\n", s.out, s.chart)
	return nil
}

// settle waits until the machine is nearly idle: under settleBusy of a
// CPU-second busy in a settleStep, at most settleMax.
func settle(busy func() float64, sleep func(time.Duration)) {
	for waited := time.Duration(0); waited < settleMax; waited += settleStep {
		b0 := busy()
		sleep(settleStep)
		if busy()-b0 < settleBusy {
			return
		}
	}
}

const (
	settleStep = 100 * time.Millisecond
	settleBusy = 0.02 // CPU-seconds in a step: a tenth of two cores
	settleMax  = 3 * time.Second
)

// benchPlans are the runs made in every mode, in order.
func benchPlans() []plan {
	return []plan{
		{Scenario: "hello", Kind: "latency"}, {Scenario: "pandas", Kind: "latency"}, {Scenario: "cpu", Kind: "latency"},
		// Data in (args) and out (a figure): what each adds to a request.
		{Scenario: "args", Kind: "latency"}, {Scenario: "plot", Kind: "latency"},
		// Back to back: what a client with steady traffic sees, where
		// strict isolation waits for spawns. The scripts that take tens
		// of milliseconds or more each get shorter runs.
		{Scenario: "hello", Kind: "backtoback", Requests: 200}, {Scenario: "pandas", Kind: "backtoback", Requests: 200},
		{Scenario: "cpu", Kind: "backtoback", Requests: 40},
		{Scenario: "args", Kind: "backtoback", Requests: 40}, {Scenario: "plot", Kind: "backtoback", Requests: 40},
		{Scenario: "hello", Kind: "throughput"}, {Scenario: "pandas", Kind: "throughput"},
		// Fork isolation's latency targets hold while sustaining a rate.
		{Scenario: "hello", Kind: "rate", Rate: forkHelloRate}, {Scenario: "pandas", Kind: "rate", Rate: forkPandasRate},
		{Scenario: "cpu", Kind: "throughput"}, {Scenario: "mixed", Kind: "throughput"}, {Scenario: "abuse", Kind: "throughput"},
	}
}

// runOptions are the load options of a closed-loop plan in a mode, URL
// and progress aside.
func runOptions(s settings, mode string, p plan) load.Options {
	var opt load.Options
	switch p.Kind {
	case "latency":
		opt.Concurrency, opt.Think, opt.Requests = 1, s.think, s.latN
		if mode == "cold" {
			opt.Requests = s.coldLatN
		}
	case "backtoback":
		opt.Concurrency, opt.Requests, opt.Warmup = 1, p.Requests, backToBackWarmup
		if mode == "cold" {
			opt.Requests = s.coldLatN
		}
		if s.b2bMax > 0 && opt.Requests > s.b2bMax {
			opt.Requests = s.b2bMax
		}
	default:
		opt.Concurrency, opt.Duration = 8, s.thrDur
	}
	return opt
}

// A bare fork is measured in bareForkRounds fresh interpreters of
// bareForks forks each.
const (
	bareForks      = 500
	bareForkRounds = 3
)

// The rates at which fork isolation's p99 target is checked: its
// throughput targets for the two scenarios.
const (
	forkHelloRate  = 150
	forkPandasRate = 100
)

// speedCheck is the time two fixed pieces of work took at one point of
// the run: on a shared machine, a slower check means the figures measured
// around it had less of the machine than the others. Hashing is pure CPU;
// forking a large process is the kernel's page-table and page-fault work,
// which other tenants can slow down while hashing stays as fast.
type speedCheck struct {
	When string
	Took time.Duration
	// Fork is the CPU-seconds of one bare fork of the jail's interpreter
	// (numpy and pandas imported), over speedForks forks; 0 if it failed.
	Fork float64
}

// speedForks is the bare forks each speed check makes.
const speedForks = 100

func checkSpeed(ctx context.Context, when, python string) speedCheck {
	c := speedCheck{When: when, Took: referenceWork()}
	if bf, err := measureBareFork(ctx, python, speedForks, 1, "numpy,pandas"); err == nil {
		c.Fork = bf.CPU
	}
	return c
}

// referenceWork hashes 256 MiB on one core, with the machine otherwise idle
// (between modes), and returns how long it took.
func referenceWork() time.Duration {
	buf := make([]byte, 1<<20)
	start := time.Now()
	h := sha256.New()
	for i := 0; i < 256; i++ {
		h.Write(buf)
	}
	_ = h.Sum(nil)
	return time.Since(start)
}

// rateRepeats is how many times each rate run is repeated: this shared
// machine's noise moves a single run's p99 by tens of milliseconds, so the
// verdict takes the median of the repetitions (all are shown).
const rateRepeats = 3

// rateRuns measures fork isolation at a fixed offered rate, rateRepeats
// times, each from an idle pool.
func rateRuns(ctx context.Context, url string, p plan, d time.Duration, res *results) error {
	sc, _ := load.Lookup(p.Scenario)
	for i := 0; i < rateRepeats; i++ {
		if err := load.WaitIdle(ctx, url, 2*time.Minute); err != nil {
			return err
		}
		rep, err := load.Run(ctx, sc, load.Options{URL: url, Progress: os.Stderr, Concurrency: 8, Duration: d, Rate: p.Rate})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "fork rate %d/%d: %s", i+1, rateRepeats, rep.Format())
		res.rates[p.Scenario] = append(res.rates[p.Scenario], rep)
	}
	return nil
}

// footprint is the memory of an idle pool: in strict isolation one nsjail
// and interpreter per worker, in fork isolation the zygote's nsjail, the
// zygote and its pre-forked children.
type footprint struct {
	// Slots is the pool's size (/health): scripts it holds ready, as
	// workers in strict isolation or pre-forked children in fork.
	Slots int
	// Jails are the nsjail processes: one per worker in strict
	// isolation, the zygote's in fork.
	Jails     int
	HarnessKB int // mean RSS of one jailed interpreter (a worker, or the zygote)
	NsjailKB  int // mean RSS of one nsjail supervisor
	// Children are the processes below the jailed interpreters: the
	// pre-forked children in fork isolation.
	Children int
	ChildKB  int // their RSS in all
	// NsjailPssKB, HarnessPssKB and ChildPssKB split PoolPssKB by kind
	// of process.
	NsjailPssKB, HarnessPssKB, ChildPssKB int
	// PoolPssKB is the proportional set size of the whole pool, every
	// process below the service: shared pages split among sharers.
	PoolPssKB int
	ServiceKB int
	// WorkerPssKB is the proportional set size of each nsjail with
	// everything below it: a worker in strict isolation, the whole
	// zygote in fork.
	WorkerPssKB []int
	// Unread counts the pool's processes whose PSS could not be read.
	Unread int
	// SharedFilesKB is the size of the zygote's memory files (fork
	// isolation); UnmappedKB the part of them no process of the pool maps,
	// which no PSS counts and which PoolPssKB and HarnessPssKB include.
	SharedFilesKB, UnmappedKB int
}

// idleFootprint measures the idle pool of s once its memory has settled:
// a pre-forked child warms up (copies ahead the pages scripts touch) after
// the pool counts it idle.
func idleFootprint(ctx context.Context, s *service.Service) (footprint, error) {
	if err := load.WaitIdle(ctx, s.URL, 2*time.Minute); err != nil {
		return footprint{}, err
	}
	st, err := poolStatus(ctx, s.URL)
	if err != nil {
		return footprint{}, err
	}
	root := s.Cmd.Process.Pid
	time.Sleep(time.Second)
	fp := poolFootprint(readProcs(), root)
	for i := 0; i < 20; i++ {
		time.Sleep(500 * time.Millisecond)
		next := poolFootprint(readProcs(), root)
		settled := abs(next.PoolPssKB-fp.PoolPssKB) <= fp.PoolPssKB/100
		fp = next
		if settled {
			break
		}
	}
	if fp.Unread > 0 {
		return footprint{}, fmt.Errorf("idle pool: the PSS of %d of its processes cannot be read (the zygote and its children are not dumpable: run as root)", fp.Unread)
	}
	fp.Slots = st.Pool.Size
	return fp, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// poolStatus reads the service's /health.
func poolStatus(ctx context.Context, url string) (pyexec.Status, error) {
	var st pyexec.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return st, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("/health: %w", err)
	}
	return st, nil
}

// readProcs reads every process of the machine.
func readProcs() map[int]procInfo {
	procs := map[int]procInfo{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			procs[pid] = p
		}
	}
	return procs
}

// poolFootprint adds up the pool below the service root: each nsjail it
// started, the interpreter nsjail runs, and every process below that, at
// any depth (fork isolation's children are the zygote's, each in pid
// namespaces of its own, but the host sees them all).
func poolFootprint(procs map[int]procInfo, root int) footprint {
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var fp footprint
	var harness, nsjail []int
	pss := func(pid int) int {
		if !procs[pid].pssRead {
			fp.Unread++
		}
		return procs[pid].pssKB
	}
	for _, jail := range children[root] {
		j := procs[jail]
		if !strings.Contains(j.name, "nsjail") {
			continue
		}
		nsjail = append(nsjail, j.rssKB)
		tree := pss(jail)
		fp.NsjailPssKB += tree
		for _, h := range children[jail] {
			harness = append(harness, procs[h].rssKB)
			hp := pss(h)
			shared := []sharedFiles{procs[h].shared}
			below := append([]int(nil), children[h]...)
			for len(below) > 0 {
				c := below[0]
				below = append(below[1:], children[c]...)
				fp.Children++
				fp.ChildKB += procs[c].rssKB
				cp := pss(c)
				fp.ChildPssKB += cp
				tree += cp
				shared = append(shared, procs[c].shared)
			}
			// The zygote's memory files hold what it and its children do
			// not map, too: counted as the zygote's.
			size, unmapped := unmappedKB(shared)
			fp.SharedFilesKB += size
			fp.UnmappedKB += unmapped
			hp += unmapped
			fp.HarnessPssKB += hp
			tree += hp
		}
		fp.WorkerPssKB = append(fp.WorkerPssKB, tree)
		fp.PoolPssKB += tree
	}
	sort.Ints(fp.WorkerPssKB)
	fp.Jails = len(nsjail)
	fp.HarnessKB, fp.NsjailKB = mean(harness), mean(nsjail)
	fp.ServiceKB = procs[root].rssKB
	return fp
}

type procInfo struct {
	ppid  int
	name  string
	rssKB int
	pssKB int
	// pssRead is false when smaps_rollup could not be read: the zygote
	// and its children are not dumpable, so only root can.
	pssRead bool
	// shared is what it maps of the zygote's memory files.
	shared sharedFiles
}

func readProc(pid int) (procInfo, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procInfo{}, false
	}
	defer f.Close()
	var p procInfo
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			p.name = v
		case "PPid":
			p.ppid, _ = strconv.Atoi(v)
		case "VmRSS":
			p.rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	p.shared = readSharedFiles(pid)
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Pss:"); ok {
				if fields := strings.Fields(v); len(fields) > 0 {
					p.pssKB, err = strconv.Atoi(fields[0])
					p.pssRead = err == nil
				}
			}
		}
	}
	return p, true
}

func mean(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	t := 0
	for _, x := range xs {
		t += x
	}
	return t / len(xs)
}

// wrkResult is what wrk reported for the cross-check.
type wrkResult struct {
	Command    string
	Throughput float64
	P50ms      float64
	Non2xx     int
	Ours       *load.Report
}

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP50    = regexp.MustCompile(`50%\s+([0-9.]+)(us|ms|s)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
)

// crossCheck runs the strict hello throughput scenario with wrk and with our
// tool, one after the other against the same fresh service.
func crossCheck(ctx context.Context, s settings, res *results) error {
	if _, err := exec.LookPath(s.wrk); err != nil {
		return fmt.Errorf("cross-check: %w (make bench installs wrk)", err)
	}
	svc, err := service.Start(s.bin, s.python, nil)
	if err != nil {
		return err
	}
	defer svc.Stop()
	script, err := filepath.Abs("bench/wrk/post.lua")
	if err != nil {
		return err
	}
	secs := int(s.thrDur / time.Second)
	if err := load.WaitIdle(ctx, svc.URL, 2*time.Minute); err != nil {
		return err
	}
	args := []string{"-t2", "-c8", fmt.Sprintf("-d%ds", secs), "--latency", "-s", script, svc.URL + "/execute"}
	out, err := exec.CommandContext(ctx, s.wrk, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cross-check: wrk: %w: %s", err, out)
	}
	w := &wrkResult{Command: "wrk " + strings.Join(args[:len(args)-1], " ") + " URL/execute"}
	if m := wrkRPS.FindStringSubmatch(string(out)); m != nil {
		w.Throughput, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := wrkP50.FindStringSubmatch(string(out)); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		switch m[2] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		w.P50ms = v
	}
	if m := wrkNon2xx.FindStringSubmatch(string(out)); m != nil {
		w.Non2xx, _ = strconv.Atoi(m[1])
	}
	if err := load.WaitIdle(ctx, svc.URL, 2*time.Minute); err != nil {
		return err
	}
	sc, _ := load.Lookup("hello")
	w.Ours, err = load.Run(ctx, sc, load.Options{URL: svc.URL, Concurrency: 8, Duration: s.thrDur})
	if err != nil {
		return err
	}
	res.wrk = w
	return nil
}

func machineFacts() map[string]string {
	f := map[string]string{
		"cores":  strconv.Itoa(runtime.NumCPU()),
		"go":     runtime.Version(),
		"date":   time.Now().UTC().Format("2006-01-02 15:04 MST"),
		"kernel": "unknown",
		"cpu":    "unknown",
		"memory": "unknown",
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				f["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		f["kernel"] = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line := strings.SplitN(string(data), "\n", 2)[0]
		if fields := strings.Fields(line); len(fields) >= 2 {
			kb, _ := strconv.Atoi(fields[1])
			f["memory"] = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return f
}

// parseSpawnBench reads spawns/s and busy CPU-seconds per spawn from the
// output of package jail's BenchmarkSpawn (the standard benchmark format:
// name, iterations, then value-unit pairs).
func parseSpawnBench(out string) (rate, cpu float64, err error) {
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || (fields[0] != "BenchmarkSpawn" && !strings.HasPrefix(fields[0], "BenchmarkSpawn-")) {
			continue
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return 0, 0, fmt.Errorf("BenchmarkSpawn: %q is not a number", fields[i])
			}
			switch fields[i+1] {
			case "spawns/s":
				rate = v
			case "busy-CPU-s/spawn":
				cpu = v
			}
		}
		if rate <= 0 || cpu <= 0 {
			return 0, 0, fmt.Errorf("BenchmarkSpawn reported no spawns/s or busy-CPU-s/spawn: %s", line)
		}
		return rate, cpu, nil
	}
	return 0, 0, errors.New("no BenchmarkSpawn result (skipped? it needs root and PYEXEC_PYTHON)")
}
