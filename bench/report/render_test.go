package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/bench/load"
)

// TestReport_MeasuresArgsAndPlotAtOneClient checks that every mode runs the
// args and plot scenarios at one client, and that the report shows each
// as a table of the three modes.
func TestReport_MeasuresArgsAndPlotAtOneClient(t *testing.T) {
	res := &results{facts: map[string]string{}, runs: map[string]map[string]*load.Report{}}
	for _, mode := range []string{"cold", "strict", "fork"} {
		res.runs[mode] = map[string]*load.Report{}
		for _, p := range benchPlans() {
			if p.Kind == "rate" {
				continue
			}
			_, ok := load.Lookup(p.Scenario)
			require.True(t, ok, "plan names a scenario that exists: %s", p.Scenario)
			res.runs[mode][p.Kind+"/"+p.Scenario] = &load.Report{Scenario: p.Scenario, Requests: 40, Right: 40,
				Latency: load.Latency{P50: 1, P90: 2, P99: 3, Max: 4}}
		}
	}
	out := renderReport(res)
	for _, sc := range []string{"args", "plot"} {
		require.NotNil(t, res.get("strict", "latency/"+sc), "%s measured at one client in strict isolation", sc)
		require.NotNil(t, res.get("fork", "latency/"+sc), "%s measured at one client in fork isolation", sc)
		desc, _ := load.Lookup(sc)
		heading := fmt.Sprintf("## `%s`, one client, with pauses\n\n%s.\n\n| | cold (pool 0) | strict (warm pool) | fork (warm pool) |", sc, desc.Description)
		assert.Contains(t, out, heading)
	}
	assert.Equal(t, 2, strings.Count(out, "## `plot`, "), "plot has only its one-client tables, with pauses and back to back")
}

// TestReport_ShowsOneWorkersPss checks the idle pool's line names the
// median worker's PSS, the figure idle-memory compares between builds.
func TestReport_ShowsOneWorkersPss(t *testing.T) {
	res := &results{facts: map[string]string{}, runs: map[string]map[string]*load.Report{},
		footprints: map[string]footprint{"strict": {Slots: 3, Jails: 3, HarnessKB: 70 << 10, NsjailKB: 8 << 10,
			PoolPssKB: 180 << 10, ServiceKB: 22 << 10, WorkerPssKB: []int{61 << 10, 59 << 10, 60 << 10}}}}
	out := renderReport(res)
	assert.Contains(t, out, "- Idle pool, strict isolation, 3 workers:")
	assert.Contains(t, out, "the whole pool **180 MiB** (proportional set size: pages shared between processes counted once), one worker 60.0 MiB of it (median), the service 22 MiB.\n")
}

// fabricated is a run of every plan in every mode whose figures say which
// mode and kind of run they belong to: p50 is base, p90 2×base, p99
// 3×base, throughput 100/base, with base 10 in cold mode, 1 in strict and
// 0.5 in fork, times 2 back to back and 10 at 8 clients; each run's CPU
// per script is base/100 s.
func fabricated() *results {
	res := &results{facts: map[string]string{"cores": "2"}, settings: settings{latN: 40, coldLatN: 12, think: 500 * time.Millisecond},
		runs: map[string]map[string]*load.Report{}, cpu: map[string]map[string]float64{}, rates: map[string][]*load.Report{},
		footprints: map[string]footprint{}}
	for mode, base := range map[string]float64{"cold": 10, "strict": 1, "fork": 0.5} {
		res.runs[mode] = map[string]*load.Report{}
		res.cpu[mode] = map[string]float64{}
		for _, p := range benchPlans() {
			if p.Kind == "rate" {
				continue
			}
			v := base * map[string]float64{"latency": 1, "backtoback": 2, "throughput": 10}[p.Kind]
			key := p.Kind + "/" + p.Scenario
			res.runs[mode][key] = &load.Report{Scenario: p.Scenario, Requests: 40, Right: 40, Throughput: 100 / v,
				Latency: load.Latency{P50: v, P90: 2 * v, P99: 3 * v, Max: 4 * v, Mean: 1.5 * v}}
			res.cpu[mode][key] = v / 100
		}
	}
	return res
}

// TestReport_OneClientBothWays checks that every one-client scenario has a
// back-to-back table beside its table with pauses, and that the overview
// puts both ways side by side, p50, p90 and p99, in every mode.
func TestReport_OneClientBothWays(t *testing.T) {
	res := fabricated()
	out := renderReport(res)
	for _, p := range benchPlans() {
		if p.Kind != "backtoback" {
			continue
		}
		require.NotNil(t, res.get("cold", "latency/"+p.Scenario), "%s is also run with pauses", p.Scenario)
		desc, _ := load.Lookup(p.Scenario)
		assert.Contains(t, out, fmt.Sprintf("## `%s`, one client, with pauses\n\n%s.\n\n", p.Scenario, desc.Description))
		assert.Contains(t, out, fmt.Sprintf("## `%s`, one client, back to back\n\n%s.\n\n", p.Scenario, desc.Description))
	}
	for _, sc := range []string{"hello", "pandas", "cpu", "args", "plot"} {
		assert.Contains(t, out, "| `"+sc+"` | fork | 0.50 ms | 1.00 ms | 1.50 ms | 1.00 ms | 2.00 ms | 3.00 ms | 100.0 req/s |\n")
		assert.Contains(t, out, "| `"+sc+"` | strict | 1.00 ms | 2.00 ms | 3.00 ms | 2.00 ms | 4.00 ms | 6.00 ms | 50.0 req/s |\n")
		assert.Contains(t, out, "| `"+sc+"` | cold (pool 0) | 10.00 ms | 20.00 ms | 30.00 ms | 20.00 ms | 40.00 ms | 60.00 ms | 5.0 req/s |\n")
	}
	// The back-to-back table of hello: p50 2× the paused one in each mode.
	i := strings.Index(out, "## `hello`, one client, back to back")
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, out[i:], "| p50 | 20.00 ms | 2.00 ms | 1.00 ms | 10.0× lower | 2.0× lower |\n")
	assert.Contains(t, out, "With a warm pool\n  200 requests for `hello` and `pandas`, 40 for `cpu`, `args` and `plot`; 12 each cold.\n")
}

// TestReport_CPUPerScript checks the CPU table lists the back-to-back and
// throughput runs of every mode, and leaves out the runs with pauses.
func TestReport_CPUPerScript(t *testing.T) {
	res := fabricated()
	res.bareFork = bareFork{Forks: 500, Rounds: 3, CPU: 0.0008, Wall: 0.0011}
	out := renderReport(res)
	assert.Contains(t, out, "| run | cold (pool 0) | strict | fork | fork vs strict | fork vs a bare fork |\n")
	assert.Contains(t, out, "| `hello`, one client, back to back | 200 ms | 20.00 ms | 10.00 ms | 2.0× less | 12.5× |\n")
	assert.Contains(t, out, "| `abuse`, 8 clients, sustained | 1.00 s | 100 ms | 50.00 ms | 2.0× less | 62.5× |\n")
	assert.NotContains(t, out, "| `hello`, one client, with pauses |", "a run with pauses measures mostly the idle machine")
	assert.Contains(t, out, "**0.80 ms CPU** per fork (this process and its children, from\n`getrusage`; the median of 3 fresh interpreters forking 500 times each), 1.10 ms wall time.")
}

// TestRunOptions checks each kind of plan's load options.
func TestRunOptions(t *testing.T) {
	s := settings{latN: 40, coldLatN: 12, think: 500 * time.Millisecond, thrDur: 20 * time.Second}
	b2b := plan{Scenario: "hello", Kind: "backtoback", Requests: 200}
	assert.Equal(t, load.Options{Concurrency: 1, Requests: 200, Warmup: 3}, runOptions(s, "fork", b2b))
	assert.Equal(t, load.Options{Concurrency: 1, Requests: 12, Warmup: 3}, runOptions(s, "cold", b2b))
	assert.Equal(t, load.Options{Concurrency: 1, Requests: 40, Think: 500 * time.Millisecond}, runOptions(s, "strict", plan{Scenario: "hello", Kind: "latency"}))
	assert.Equal(t, load.Options{Concurrency: 8, Duration: 20 * time.Second}, runOptions(s, "strict", plan{Scenario: "hello", Kind: "throughput"}))
	s.b2bMax = 10
	assert.Equal(t, 10, runOptions(s, "strict", b2b).Requests, "-quick shortens back-to-back runs")
}

// TestReport_ForkPoolMemory checks fork isolation's idle pool line names
// the slots, the children and the whole pool's PSS split by process.
func TestReport_ForkPoolMemory(t *testing.T) {
	res := &results{facts: map[string]string{}, runs: map[string]map[string]*load.Report{},
		footprints: map[string]footprint{"fork": {Slots: 8, Jails: 1, HarnessKB: 70 << 10, NsjailKB: 8 << 10,
			Children: 8, ChildKB: 8 * 68 << 10, NsjailPssKB: 2 << 10, HarnessPssKB: 40 << 10, ChildPssKB: 80 << 10,
			PoolPssKB: 122 << 10, ServiceKB: 23 << 10, WorkerPssKB: []int{122 << 10}}}}
	out := renderReport(res)
	assert.Contains(t, out, "- Idle pool, fork isolation, 8 slots: one zygote (numpy and pandas imported) holds **70 MiB** RSS,\n"+
		"  its nsjail supervisor 8.0 MiB, the 8 pre-forked children 544 MiB in all (mostly pages shared with the zygote);\n"+
		"  the whole pool **122 MiB** (proportional set size: pages shared between processes counted once): the nsjail\n"+
		"  2.0 MiB, the zygote 40.0 MiB, the children 80.0 MiB (10.0 MiB each); the service 23 MiB.\n")
}

// TestSettle checks settle waits while the machine is busy, and no longer
// than settleMax.
func TestSettle(t *testing.T) {
	// Busy 0.05 CPU-s per step for three steps, then idle.
	var cpu float64
	steps := 0
	busy := func() float64 { return cpu }
	sleep := func(time.Duration) {
		steps++
		if steps <= 3 {
			cpu += 0.05
		} else {
			cpu += 0.001
		}
	}
	settle(busy, sleep)
	assert.Equal(t, 4, steps, "three busy steps, then one idle one")

	steps = 0
	settle(busy, func(time.Duration) { steps++; cpu += 1 })
	assert.Equal(t, int(settleMax/settleStep), steps, "a machine that stays busy is waited for settleMax at most")
}

// TestReport_ShowsBothSpeedChecks checks the machine section gives the
// hashing time and the bare fork's CPU at every check, in order.
func TestReport_ShowsBothSpeedChecks(t *testing.T) {
	res := &results{facts: map[string]string{}, runs: map[string]map[string]*load.Report{},
		speed: []speedCheck{{"cold", 150 * time.Millisecond, 0.0031}, {"fork", 152 * time.Millisecond, 0.0042}}}
	out := renderReport(res)
	assert.Contains(t, out, "end, SHA-256 of 256 MiB on one core: cold 150 ms, fork 152 ms;\n")
	assert.Contains(t, out, "and the CPU of a bare fork of the jail's interpreter (100 forks): cold 3.10 ms, fork 4.20 ms.\n")
}
