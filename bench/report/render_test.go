package main

import (
	"fmt"
	"strings"
	"testing"

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
	assert.Equal(t, 1, strings.Count(out, "## `plot`, "), "plot has only its one-client table")
}

// TestReport_ShowsOneWorkersPss checks the idle pool's line names the
// median worker's PSS, the figure idle-memory compares between builds.
func TestReport_ShowsOneWorkersPss(t *testing.T) {
	res := &results{facts: map[string]string{}, runs: map[string]map[string]*load.Report{},
		footprints: map[string]footprint{"strict": {Workers: 3, HarnessKB: 70 << 10, NsjailKB: 8 << 10,
			PoolPssKB: 180 << 10, ServiceKB: 22 << 10, WorkerPssKB: []int{61 << 10, 59 << 10, 60 << 10}}}}
	out := renderReport(res)
	assert.Contains(t, out, "- Idle pool, strict isolation, 3 workers:")
	assert.Contains(t, out, "the whole pool **180 MiB** (proportional set size: pages shared between processes counted once), one worker 60.0 MiB of it (median), the service 22 MiB.\n")
}
