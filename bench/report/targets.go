package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pyexec/pyexec/bench/load"
)

// Fork isolation's targets on the 2-core machine docs/BENCHMARKS.md is
// measured on.
const (
	forkHelloThroughput  = 200 // req/s at 8 clients
	forkPandasThroughput = 120 // req/s at 8 clients
	forkHelloB2BP50      = 2   // ms, one client back to back
	forkHelloB2BP99      = 10  // ms, one client back to back
	forkHelloPausedP50   = 1.5 // ms, one client with pauses
	forkPandasB2BP50     = 4   // ms, one client back to back
	forkRateP99          = 15  // ms, open loop at forkHelloRate and forkPandasRate
	forkPoolSlots        = 8   // slots of the idle pool whose memory is bounded
	forkPoolMB           = 150 // MB (10^6 bytes) of PSS for those slots
)

// target is one row of a targets table: what is aimed at, fork's and
// strict's figures from the same run, and fork's verdict.
type target struct {
	name, fork, strict, verdict string
}

// notMeasured is the verdict of a target whose run is missing.
const notMeasured = "**not measured**"

// stated marks a figure the report states without a target.
const stated = "stated"

// forkTargets computes fork isolation's targets from the run, with strict
// isolation's figures beside them.
func forkTargets(r *results) []target {
	var ts []target
	// figure formats one report's figure, or says the run is missing.
	figure := func(rep *load.Report, f func(*load.Report) string) string {
		if rep == nil {
			return "not measured"
		}
		return f(rep)
	}
	thr := func(x *load.Report) string { return fmt.Sprintf("%.1f req/s", x.Throughput) }
	latency := func(sc, kind, what string, limit float64, get func(load.Latency) float64) target {
		f, st := r.get("fork", kind+"/"+sc), r.get("strict", kind+"/"+sc)
		fmtv := func(x *load.Report) string { return ms(get(x.Latency)) }
		t := target{name: fmt.Sprintf("`%s`, one client %s: %s ≤ %s", sc, map[string]string{"backtoback": "back to back", "latency": "with pauses"}[kind], what, limitMs(limit)),
			fork: figure(f, fmtv), strict: figure(st, fmtv), verdict: notMeasured}
		if f != nil {
			t.verdict = verdict(get(f.Latency) <= limit)
		}
		return t
	}
	throughput := func(sc string, limit float64) target {
		f, st := r.get("fork", "throughput/"+sc), r.get("strict", "throughput/"+sc)
		t := target{name: fmt.Sprintf("`%s` at 8 clients ≥ %.0f req/s", sc, limit), fork: figure(f, thr), strict: figure(st, thr), verdict: notMeasured}
		if f != nil {
			t.verdict = verdict(f.Throughput >= limit)
		}
		return t
	}
	rate := func(sc string, rate int) target {
		t := target{name: fmt.Sprintf("`%s` open loop at %d req/s: p99 ≤ %s", sc, rate, limitMs(forkRateP99)), fork: "not measured", verdict: notMeasured}
		t.strict = "not run"
		if st := r.get("strict", "throughput/"+sc); st != nil {
			t.strict = fmt.Sprintf("not run (%.1f req/s at most)", st.Throughput)
		}
		runs := r.rates[sc]
		if len(runs) == 0 {
			return t
		}
		med, sustained := medianP99(runs)
		t.fork = fmt.Sprintf("%s (median of %d runs)", ms(med), len(runs))
		if !sustained {
			t.fork += ", rate not sustained"
		}
		t.verdict = verdict(med <= forkRateP99 && sustained)
		return t
	}
	p50 := func(l load.Latency) float64 { return l.P50 }
	p99 := func(l load.Latency) float64 { return l.P99 }

	ts = append(ts,
		throughput("hello", forkHelloThroughput),
		latency("hello", "backtoback", "p50", forkHelloB2BP50, p50),
		latency("hello", "backtoback", "p99", forkHelloB2BP99, p99),
		latency("hello", "latency", "p50", forkHelloPausedP50, p50),
		throughput("pandas", forkPandasThroughput),
		latency("pandas", "backtoback", "p50", forkPandasB2BP50, p50),
		rate("hello", forkHelloRate),
		rate("pandas", forkPandasRate),
		memoryTarget(r),
		cpuTarget(r),
	)

	// Older targets that still apply.
	f, st := r.get("fork", "throughput/hello"), r.get("strict", "throughput/hello")
	t := target{name: "`hello` at 8 clients ≥ 30× strict", fork: figure(f, thr), strict: figure(st, thr), verdict: notMeasured}
	if f != nil && st != nil && st.Throughput > 0 {
		share := f.Throughput / st.Throughput
		t.fork += fmt.Sprintf(" (%.0f×)", share)
		t.verdict = verdict(share >= 30)
	}
	ts = append(ts, t)
	for _, sc := range []string{"hello", "pandas"} {
		f, st := r.get("fork", "latency/"+sc), r.get("strict", "latency/"+sc)
		fmtv := func(x *load.Report) string { return ms(x.Latency.P50) }
		t := target{name: fmt.Sprintf("`%s`, one client with pauses: p50 no worse than strict (within 10%%)", sc),
			fork: figure(f, fmtv), strict: figure(st, fmtv), verdict: notMeasured}
		if f != nil && st != nil {
			t.verdict = verdict(f.Latency.P50 <= st.Latency.P50*1.1)
		}
		ts = append(ts, t)
	}
	return ts
}

// limitMs formats a target's bound in milliseconds as written: 2 ms, 1.5 ms.
func limitMs(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + " ms" }

// mb is kilobytes (KiB) in megabytes of 10^6 bytes, the target's unit.
func mb(kb int) float64 { return float64(kb) * 1024 / 1e6 }

// poolMemory formats an idle pool's PSS in MB, and in MiB as the rest of
// the report does.
func poolMemory(fp footprint) string {
	return fmt.Sprintf("%.0f MB (%.0f MiB) for %d slots", mb(fp.PoolPssKB), float64(fp.PoolPssKB)/1024, fp.Slots)
}

// memoryTarget bounds the idle pool's PSS for forkPoolSlots slots; a pool
// of another size is not compared.
func memoryTarget(r *results) target {
	t := target{name: fmt.Sprintf("idle memory of the whole pool of %d slots ≤ %d MB PSS", forkPoolSlots, forkPoolMB),
		fork: "not measured", strict: "not measured", verdict: notMeasured}
	if fp, ok := r.footprints["strict"]; ok {
		t.strict = poolMemory(fp)
	}
	fp, ok := r.footprints["fork"]
	if !ok {
		return t
	}
	t.fork = poolMemory(fp)
	if fp.Slots != forkPoolSlots {
		t.verdict = fmt.Sprintf("**not comparable** (a pool of %d)", fp.Slots)
		return t
	}
	t.verdict = verdict(mb(fp.PoolPssKB) <= forkPoolMB)
	return t
}

// cpuTarget states the CPU a `hello` script costs as a multiple of a bare
// fork of the same interpreter: at 8 clients and one client back to back.
func cpuTarget(r *results) target {
	t := target{name: "CPU per `hello` script vs a bare fork of the interpreter", verdict: stated}
	if r.bareFork.CPU > 0 {
		t.name += fmt.Sprintf(" (%s)", cpuMs(r.bareFork.CPU))
	}
	side := func(mode string) string {
		var parts []string
		for _, run := range []struct{ key, name string }{{"throughput/hello", "8 clients"}, {"backtoback/hello", "one client back to back"}} {
			if c := r.cpu[mode][run.key]; c > 0 {
				part := fmt.Sprintf("%s %s", run.name, cpuMs(c))
				if r.bareFork.CPU > 0 {
					part += fmt.Sprintf(", **%s**", ratio(c, r.bareFork.CPU))
				}
				parts = append(parts, part)
			}
		}
		if len(parts) == 0 {
			return "not measured"
		}
		return strings.Join(parts, "; ")
	}
	t.fork, t.strict = side("fork"), side("strict")
	if r.bareFork.CPU <= 0 {
		t.verdict = notMeasured + " (no bare fork)"
	}
	return t
}

// renderTargets writes fork isolation's targets table.
func renderTargets(b *strings.Builder, r *results) {
	b.WriteString("| target | fork | strict (same run) | fork's verdict |\n|---|---|---|---|\n")
	for _, t := range forkTargets(r) {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.name, t.fork, t.strict, t.verdict)
	}
	b.WriteString("\n")
}

// renderBackToBackBound shows what bounds fork isolation's one-client
// back-to-back runs. Each answer uses up a child and the next request
// waits for one, so the client's rate is at most the cores over the CPU a
// script costs (the making and teardown of its child included): its mean
// latency is at least that CPU over the cores, whatever the order of the
// work. The rows put the measured mean beside that floor, and the CPU per
// script a mean at the target's p50 would need.
func renderBackToBackBound(b *strings.Builder, r *results) {
	cores := 0.0
	fmt.Sscan(r.facts["cores"], &cores)
	if cores <= 0 {
		return
	}
	var rows []string
	for _, sc := range []struct {
		name   string
		target float64
	}{{"hello", forkHelloB2BP50}, {"pandas", forkPandasB2BP50}} {
		rep, cpu := r.get("fork", "backtoback/"+sc.name), r.cpu["fork"]["backtoback/"+sc.name]
		if rep == nil || cpu <= 0 || rep.Latency.Mean <= 0 {
			continue
		}
		floor := cpu * 1000 / cores
		rows = append(rows, fmt.Sprintf("| `%s` | %s | %s | %s | %s | %s | %s (%s) |\n", sc.name, ms(rep.Latency.P50),
			ms(rep.Latency.Mean), cpuMs(cpu), ms(floor), ratio(rep.Latency.Mean, floor),
			ms(sc.target*cores), "a mean of "+limitMs(sc.target)))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("#### What bounds one client back to back\n\n")
	b.WriteString("Back to back, every answer uses up a child and the next request waits until one is ready, so one\n")
	fmt.Fprintf(b, "client gets at most %s cores ÷ the CPU a script costs answers a second (the machine's CPU per script\n", r.facts["cores"])
	b.WriteString("below: the making and teardown of its child, the service and the load tool included). Its mean\n")
	b.WriteString("latency is at least that CPU ÷ the cores, however the work is ordered.\n")
	b.WriteString("A mean near that floor means the run was bound by the machine's capacity, not by waiting.\n\n")
	b.WriteString("| scenario | p50 | mean | CPU per script | floor of the mean | mean ÷ floor | CPU per script the target needs |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, row := range rows {
		b.WriteString(row)
	}
	b.WriteString("\n")
}
