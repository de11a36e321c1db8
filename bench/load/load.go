// Package load drives a running pyexec service over HTTP, through package
// client, and measures it:
// closed-loop (each of N clients sends its next request when the previous
// answer arrives) or open-loop at a fixed rate, with latencies in an
// HdrHistogram and every answer checked.
package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/client"
)

// Options describe one run.
type Options struct {
	URL         string // service base URL, e.g. http://127.0.0.1:8080
	APIKey      string
	Concurrency int
	// Requests and Duration bound the run; the first reached ends it.
	// At least one must be set.
	Requests int
	Duration time.Duration
	// Rate, when positive, sends requests open-loop at this many per
	// second; latency then counts from the scheduled send time, so a
	// stalled service cannot hide its queueing (no coordinated omission).
	Rate float64
	// Think is a pause after each answer in closed-loop mode, so that a
	// light load (a client at a time, with pauses) can be measured.
	Think time.Duration
	// Warmup requests are sent first and not measured.
	Warmup int
	// HTTPTimeout bounds one request (default 60s).
	HTTPTimeout time.Duration
	// Progress, when set, receives progress; Terminal selects a redrawn
	// bar instead of plain lines.
	Progress io.Writer
	Terminal bool
}

// Report is the outcome of a run.
type Report struct {
	Scenario    string         `json:"scenario"`
	Concurrency int            `json:"concurrency"`
	Rate        float64        `json:"rate,omitempty"`
	ThinkMS     float64        `json:"think_ms,omitempty"`
	Requests    int64          `json:"requests"`
	Right       int64          `json:"right"`
	Wrong       int64          `json:"wrong"`
	Errors      int64          `json:"transport_errors"`
	Seconds     float64        `json:"seconds"`
	Throughput  float64        `json:"throughput_rps"`
	Latency     Latency        `json:"latency_ms"`
	ByType      map[string]int `json:"by_type"`
	ByStatus    map[string]int `json:"by_status"`
	ByKind      map[string]int `json:"by_kind"`
	Failures    []string       `json:"failures,omitempty"`
	// Curve is latency by percentile, for charts.
	Curve []Point `json:"curve"`
}

// Latency summarises the histogram, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Point is one percentile of the latency distribution.
type Point struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

type recorder struct {
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	byType   map[string]int
	byStatus map[string]int
	byKind   map[string]int
	failures []string
	right    int64
	wrong    int64
	errors   int64
	done     atomic.Int64
}

func (r *recorder) record(kind string, latency time.Duration, status int, typ string, err error, counted bool) {
	r.done.Add(1)
	if !counted {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	us := latency.Microseconds()
	if us < 1 {
		us = 1
	}
	_ = r.hist.RecordValue(us)
	r.byKind[kind]++
	if status == 0 {
		r.errors++
		r.byStatus["error"]++
	} else {
		r.byStatus[fmt.Sprint(status)]++
		r.byType[typ]++
	}
	if err != nil {
		r.wrong++
		if len(r.failures) < 10 {
			r.failures = append(r.failures, fmt.Sprintf("%s: %v", kind, err))
		}
		return
	}
	r.right++
}

// send posts one case. It returns the answer's status and the script's
// outcome, or for a refusal (overloaded, rate_limited...) an outcome whose
// Error is the refusal, so that checks see every answer the same way; err
// is set only when there was no answer from the service (status 0) or it
// was not the service's JSON. sent and done bracket the call, so building
// the case and checking it do not count as the service's latency (encoding
// the request and decoding the answer, a few microseconds, do).
func send(ctx context.Context, c *client.Client, cs Case) (status int, r *pyexec.Response, sent, done time.Time, err error) {
	sent = time.Now()
	a, err := c.Execute(ctx, cs.Request)
	done = time.Now()
	if err == nil {
		return a.Status, a.Response, sent, done, nil
	}
	var pe *pyexec.Error
	var se *client.StatusError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		return 0, nil, sent, done, err
	}
	if errors.Is(err, client.ErrNotEnvelope) {
		return se.Status, nil, sent, done, err
	}
	return se.Status, &pyexec.Response{Error: pe}, sent, done, nil
}

// Run drives the service with sc until opt's bounds are reached or ctx ends.
func Run(ctx context.Context, sc Scenario, opt Options) (*Report, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = 1
	}
	if opt.Requests <= 0 && opt.Duration <= 0 {
		return nil, errors.New("run: set a request count or a duration")
	}
	if opt.HTTPTimeout == 0 {
		opt.HTTPTimeout = 60 * time.Second
	}
	hc := &http.Client{Timeout: opt.HTTPTimeout, Transport: &http.Transport{
		MaxIdleConns: opt.Concurrency * 2, MaxIdleConnsPerHost: opt.Concurrency * 2,
		IdleConnTimeout: 90 * time.Second,
	}}
	defer hc.CloseIdleConnections()
	c := &client.Client{BaseURL: opt.URL, APIKey: opt.APIKey, HTTP: hc}

	var seq atomic.Int64
	for i := 0; i < opt.Warmup; i++ {
		n := int(seq.Add(1)) - 1
		if _, _, _, _, err := send(ctx, c, sc.Next(n)); err != nil {
			return nil, fmt.Errorf("run: warm-up: %w", err)
		}
	}

	rec := &recorder{
		hist:   hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3),
		byType: map[string]int{}, byStatus: map[string]int{}, byKind: map[string]int{},
	}
	rctx := ctx
	if opt.Duration > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, opt.Duration)
		defer cancel()
	}
	var issued atomic.Int64
	take := func() (int, bool) {
		k := issued.Add(1)
		if opt.Requests > 0 && k > int64(opt.Requests) {
			return 0, false
		}
		return int(seq.Add(1)) - 1, true
	}
	// one sends request n. Open loop, latency counts from the time it was
	// scheduled (queueing in the client included); closed loop (a zero
	// time), from the time it was sent.
	one := func(n int, scheduled time.Time) {
		cs := sc.Next(n)
		status, r, sent, done, err := send(context.WithoutCancel(rctx), c, cs)
		if scheduled.IsZero() {
			scheduled = sent
		}
		lat := done.Sub(scheduled)
		typ := ""
		if err == nil {
			typ = outcomeOf(r)
			err = cs.Check(status, r)
		}
		rec.record(cs.Kind, lat, status, typ, err, true)
	}

	start := time.Now()
	stopProgress := startProgress(opt, rec, start)
	var wg sync.WaitGroup
	if opt.Rate > 0 {
		slots := make(chan time.Time, opt.Concurrency)
		for w := 0; w < opt.Concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for at := range slots {
					n, ok := take()
					if !ok {
						continue
					}
					one(n, at)
				}
			}()
		}
		interval := time.Duration(float64(time.Second) / opt.Rate)
	dispatch:
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * interval)
			if opt.Requests > 0 && i >= opt.Requests {
				break
			}
			select {
			case <-rctx.Done():
				break dispatch
			case <-time.After(time.Until(at)):
			}
			slots <- at
		}
		close(slots)
	} else {
		for w := 0; w < opt.Concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rctx.Err() == nil {
					n, ok := take()
					if !ok {
						return
					}
					one(n, time.Time{})
					if opt.Think > 0 {
						select {
						case <-rctx.Done():
						case <-time.After(opt.Think):
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	return rec.report(sc.Name, opt, elapsed), nil
}

func (r *recorder) report(name string, opt Options, elapsed time.Duration) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	total := r.right + r.wrong
	rep := &Report{
		Scenario: name, Concurrency: opt.Concurrency, Rate: opt.Rate,
		ThinkMS:  float64(opt.Think.Microseconds()) / 1000,
		Requests: total, Right: r.right, Wrong: r.wrong, Errors: r.errors,
		Seconds:    elapsed.Seconds(),
		Throughput: float64(total) / elapsed.Seconds(),
		Latency: Latency{
			P50: ms(r.hist.ValueAtQuantile(50)), P90: ms(r.hist.ValueAtQuantile(90)),
			P99: ms(r.hist.ValueAtQuantile(99)), Max: ms(r.hist.Max()),
			Mean: r.hist.Mean() / 1000,
		},
		ByType: r.byType, ByStatus: r.byStatus, ByKind: r.byKind, Failures: r.failures,
	}
	for _, q := range []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.9, 100} {
		rep.Curve = append(rep.Curve, Point{Percentile: q, Ms: ms(r.hist.ValueAtQuantile(q))})
	}
	return rep
}

func startProgress(opt Options, rec *recorder, start time.Time) func() {
	if opt.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	every := 5 * time.Second
	if opt.Terminal {
		every = 200 * time.Millisecond
	}
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				if opt.Terminal {
					fmt.Fprint(opt.Progress, "\r\033[K")
				}
				return
			case <-t.C:
				n := rec.done.Load()
				el := time.Since(start)
				frac := 0.0
				switch {
				case opt.Requests > 0:
					frac = float64(n) / float64(opt.Requests)
				case opt.Duration > 0:
					frac = el.Seconds() / opt.Duration.Seconds()
				}
				if frac > 1 {
					frac = 1
				}
				rate := float64(n) / el.Seconds()
				if opt.Terminal {
					const width = 30
					fill := int(frac * width)
					fmt.Fprintf(opt.Progress, "\r[%s%s] %3.0f%% %d requests %.1f req/s",
						strings.Repeat("#", fill), strings.Repeat(" ", width-fill), frac*100, n, rate)
				} else {
					fmt.Fprintf(opt.Progress, "progress: %.0f%% %d requests %.1f req/s\n", frac*100, n, rate)
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// Format renders a report as plain text.
func (r *Report) Format() string {
	var b strings.Builder
	mode := fmt.Sprintf("concurrency %d", r.Concurrency)
	if r.Rate > 0 {
		mode += fmt.Sprintf(", open loop at %.1f req/s", r.Rate)
	}
	if r.ThinkMS > 0 {
		mode += fmt.Sprintf(", %.0f ms pause after each answer", r.ThinkMS)
	}
	fmt.Fprintf(&b, "scenario %s (%s)\n", r.Scenario, mode)
	fmt.Fprintf(&b, "  requests   %d in %.1fs: %.1f req/s\n", r.Requests, r.Seconds, r.Throughput)
	fmt.Fprintf(&b, "  latency    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(&b, "  checked    %d right, %d wrong, %d transport errors\n", r.Right, r.Wrong, r.Errors)
	fmt.Fprintf(&b, "  outcomes   %s\n", formatCounts(r.ByType))
	fmt.Fprintf(&b, "  statuses   %s\n", formatCounts(r.ByStatus))
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  failure    %s\n", f)
	}
	return b.String()
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// WaitIdle polls /health until the pool has every worker idle (or, for a
// pool of size 0, until the service is ready), at most timeout.
func WaitIdle(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var h pyexec.Status
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/health", nil)
		if err != nil {
			return err
		}
		if res, err := http.DefaultClient.Do(req); err == nil {
			_ = json.NewDecoder(res.Body).Decode(&h)
			res.Body.Close()
			if h.Ready && h.Pool.Idle >= h.Pool.Size {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for an idle pool: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
