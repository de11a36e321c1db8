package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/bench/load"
)

// onTarget is a run that meets every fork target: the figures of the
// issue's 2-core machine, strict's beside them.
func onTarget() *results {
	res := fabricated()
	set := func(mode, key string, thr, p50, p90, p99 float64) {
		rep := res.runs[mode][key]
		rep.Throughput, rep.Latency = thr, load.Latency{P50: p50, P90: p90, P99: p99, Max: p99 + 1}
	}
	set("fork", "throughput/hello", 214, 36, 50, 65)
	set("strict", "throughput/hello", 6.6, 1040, 1290, 1440)
	set("fork", "throughput/pandas", 133, 55, 70, 90)
	set("strict", "throughput/pandas", 6.5, 1100, 1300, 1500)
	set("fork", "backtoback/hello", 600, 1.6, 2.1, 4.2)
	set("strict", "backtoback/hello", 7.4, 3.2, 670, 900)
	set("fork", "latency/hello", 2, 1.3, 1.6, 1.9)
	set("strict", "latency/hello", 2, 1.44, 2.4, 5.4)
	set("fork", "backtoback/pandas", 300, 3.5, 4.4, 6)
	set("strict", "backtoback/pandas", 7, 4.1, 700, 950)
	set("fork", "latency/pandas", 2, 3.4, 3.9, 4.4)
	set("strict", "latency/pandas", 2, 3.3, 3.8, 4.5)
	rate := func(r, p99 float64) *load.Report {
		return &load.Report{Rate: r, Throughput: r, Requests: int64(10 * r), Right: int64(10 * r), Latency: load.Latency{P99: p99}}
	}
	res.rates["hello"] = []*load.Report{rate(150, 11.2), rate(150, 17.8), rate(150, 10.0)}
	res.rates["pandas"] = []*load.Report{rate(100, 13.2), rate(100, 13.3), rate(100, 13.7)}
	res.footprints["strict"] = footprint{Slots: 8, Jails: 8, PoolPssKB: 394 << 10, WorkerPssKB: []int{49 << 10}}
	res.footprints["fork"] = footprint{Slots: 8, Jails: 1, Children: 8, PoolPssKB: 120 << 10, WorkerPssKB: []int{120 << 10}}
	res.cpu["fork"]["throughput/hello"] = 0.0041
	res.cpu["fork"]["backtoback/hello"] = 0.0052
	res.cpu["strict"]["throughput/hello"] = 0.29
	res.cpu["strict"]["backtoback/hello"] = 0.28
	res.bareFork = bareFork{Forks: 500, Rounds: 3, CPU: 0.0008, Wall: 0.001}
	return res
}

// targetRows returns the fork targets table's rows by target name.
func targetRows(t *testing.T, out string) map[string]string {
	t.Helper()
	i := strings.Index(out, "| target | fork | strict (same run) | fork's verdict |\n")
	require.GreaterOrEqual(t, i, 0, "the fork targets table is rendered")
	rows := map[string]string{}
	for _, line := range strings.Split(out[i:], "\n")[2:] {
		if !strings.HasPrefix(line, "| ") {
			break
		}
		name := strings.TrimSpace(strings.Split(line, "|")[1])
		rows[name] = line
	}
	return rows
}

// TestForkTargets_AllMet checks every target of fork isolation is listed
// with fork's figure, strict's from the same run and the verdict.
func TestForkTargets_AllMet(t *testing.T) {
	rows := targetRows(t, renderReport(onTarget()))
	want := []string{
		"| `hello` at 8 clients ≥ 200 req/s | 214.0 req/s | 6.6 req/s | met |",
		"| `hello`, one client back to back: p50 ≤ 2 ms | 1.60 ms | 3.20 ms | met |",
		"| `hello`, one client back to back: p99 ≤ 10 ms | 4.20 ms | 900 ms | met |",
		"| `hello`, one client with pauses: p50 ≤ 1.5 ms | 1.30 ms | 1.44 ms | met |",
		"| `pandas` at 8 clients ≥ 120 req/s | 133.0 req/s | 6.5 req/s | met |",
		"| `pandas`, one client back to back: p50 ≤ 4 ms | 3.50 ms | 4.10 ms | met |",
		"| `hello` open loop at 150 req/s: p99 ≤ 15 ms | 11.20 ms (median of 3 runs) | not run (6.6 req/s at most) | met |",
		"| `pandas` open loop at 100 req/s: p99 ≤ 15 ms | 13.30 ms (median of 3 runs) | not run (6.5 req/s at most) | met |",
		"| idle memory of the whole pool of 8 slots ≤ 150 MB PSS | 126 MB (120 MiB) for 8 slots | 413 MB (394 MiB) for 8 slots | met |",
		"| CPU per `hello` script vs a bare fork of the interpreter (0.80 ms) | 8 clients 4.10 ms, **5.1×**; one client back to back 5.20 ms, **6.5×** | 8 clients 290 ms, **362×**; one client back to back 280 ms, **350×** | stated |",
		// Older targets that still apply.
		"| `hello` at 8 clients ≥ 30× strict | 214.0 req/s (32×) | 6.6 req/s | met |",
		"| `hello`, one client with pauses: p50 no worse than strict (within 10%) | 1.30 ms | 1.44 ms | met |",
		"| `pandas`, one client with pauses: p50 no worse than strict (within 10%) | 3.40 ms | 3.30 ms | met |",
	}
	for _, w := range want {
		name := strings.TrimSpace(strings.Split(w, "|")[1])
		assert.Equal(t, w, rows[name], name)
	}
	assert.Len(t, rows, len(want), "no other rows: the superseded targets (150 and 100 req/s, p99 ≤ 25 ms) are gone")
}

// TestForkTargets_Missed checks a figure past its bound renders as
// missed, each target on its own.
func TestForkTargets_Missed(t *testing.T) {
	for name, c := range map[string]struct {
		spoil func(*results)
		row   string
	}{
		"throughput": {func(r *results) { r.runs["fork"]["throughput/hello"].Throughput = 199.9 },
			"| `hello` at 8 clients ≥ 200 req/s | 199.9 req/s | 6.6 req/s | **missed** |"},
		"back to back p99": {func(r *results) { r.runs["fork"]["backtoback/hello"].Latency.P99 = 10.5 },
			"| `hello`, one client back to back: p99 ≤ 10 ms | 10.50 ms | 900 ms | **missed** |"},
		"with pauses p50": {func(r *results) { r.runs["fork"]["latency/hello"].Latency.P50 = 1.51 },
			"| `hello`, one client with pauses: p50 ≤ 1.5 ms | 1.51 ms | 1.44 ms | **missed** |"},
		"pandas back to back p50": {func(r *results) { r.runs["fork"]["backtoback/pandas"].Latency.P50 = 4.2 },
			"| `pandas`, one client back to back: p50 ≤ 4 ms | 4.20 ms | 4.10 ms | **missed** |"},
		"open-loop p99": {func(r *results) { r.rates["pandas"][1].Latency.P99 = 15.2; r.rates["pandas"][2].Latency.P99 = 16 },
			"| `pandas` open loop at 100 req/s: p99 ≤ 15 ms | 15.20 ms (median of 3 runs) | not run (6.5 req/s at most) | **missed** |"},
		"open-loop rate not sustained": {func(r *results) { r.rates["hello"][0].Throughput = 120 },
			"| `hello` open loop at 150 req/s: p99 ≤ 15 ms | 11.20 ms (median of 3 runs), rate not sustained | not run (6.6 req/s at most) | **missed** |"},
		// 150 MiB is 157 MB: the bound is in MB, as the target says.
		"memory": {func(r *results) { fp := r.footprints["fork"]; fp.PoolPssKB = 145 << 10; r.footprints["fork"] = fp },
			"| idle memory of the whole pool of 8 slots ≤ 150 MB PSS | 152 MB (145 MiB) for 8 slots | 413 MB (394 MiB) for 8 slots | **missed** |"},
		"memory of another pool size": {func(r *results) { fp := r.footprints["fork"]; fp.Slots = 4; r.footprints["fork"] = fp },
			"| idle memory of the whole pool of 8 slots ≤ 150 MB PSS | 126 MB (120 MiB) for 4 slots | 413 MB (394 MiB) for 8 slots | **not comparable** (a pool of 4) |"},
		"a run missing": {func(r *results) { delete(r.runs["fork"], "backtoback/pandas") },
			"| `pandas`, one client back to back: p50 ≤ 4 ms | not measured | 4.10 ms | **not measured** |"},
	} {
		t.Run(name, func(t *testing.T) {
			res := onTarget()
			c.spoil(res)
			out := renderReport(res)
			row := strings.TrimSpace(strings.Split(c.row, "|")[1])
			assert.Equal(t, c.row, targetRows(t, out)[row])
			assert.Equal(t, 1, strings.Count(targetsTable(out), "**missed**")+strings.Count(targetsTable(out), "**not "), "only the spoilt target fails")
		})
	}
}

// targetsTable is the fork targets table's text.
func targetsTable(out string) string {
	i := strings.Index(out, "| target | fork | strict (same run) | fork's verdict |\n")
	if i < 0 {
		return ""
	}
	j := strings.Index(out[i:], "\n\n")
	return out[i : i+j]
}

// TestReport_BackToBackBound checks the floor the machine's capacity puts
// under one client back to back: the CPU per script over the cores, beside
// the run's mean, and the CPU per script a mean at the target would need.
func TestReport_BackToBackBound(t *testing.T) {
	res := fabricated()
	// fork back to back: p50 1 ms, mean 1.5 ms, 10 ms of CPU per script.
	res.runs["fork"]["backtoback/pandas"].Latency.Mean = 12
	res.cpu["fork"]["backtoback/pandas"] = 0.02
	out := renderReport(res)
	assert.Contains(t, out, "#### What bounds one client back to back\n")
	assert.Contains(t, out, "client gets at most 2 cores ÷ the CPU a script costs answers a second")
	assert.Contains(t, out, "| `hello` | 1.00 ms | 1.50 ms | 10.00 ms | 5.00 ms | 0.3× | 4.00 ms (a mean of 2 ms) |\n")
	assert.Contains(t, out, "| `pandas` | 1.00 ms | 12.00 ms | 20.00 ms | 10.00 ms | 1.2× | 8.00 ms (a mean of 4 ms) |\n")
	assert.Less(t, strings.Index(out, "#### What bounds"), strings.Index(out, "### Strict isolation"), "under fork's targets")

	res.cpu["fork"]["backtoback/pandas"] = 0
	out = renderReport(res)
	assert.NotContains(t, out, "| `pandas` | 1.00 ms | 12.00 ms |", "no row without the run's CPU")

	res.facts["cores"] = ""
	assert.NotContains(t, renderReport(res), "What bounds one client back to back", "no floor without the number of cores")
}
