package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the HTTP-side Prometheus metrics. Build them with NewMetrics
// on a registry the caller owns (never the global one) and pass them in
// Config; the registry is also what /metrics serves.
type Metrics struct {
	gatherer  prometheus.Gatherer
	requests  *prometheus.CounterVec
	total     prometheus.Histogram
	queue     prometheus.Histogram
	execution prometheus.Histogram
	toolCalls *prometheus.CounterVec
}

// latencyBuckets span a warm millisecond answer to a 30 s timeout.
func latencyBuckets() []float64 {
	return []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
}

// NewMetrics registers the request metrics on reg.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		gatherer: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pyexec_requests_total",
			Help: "Requests to /execute, and requests refused before routing (unreadable, too large, too slow), by outcome (error type, or ok) and HTTP status.",
		}, []string{"outcome", "status"}),
		total: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pyexec_request_duration_seconds", Help: "Time to answer /execute, end to end in the service.",
			Buckets: latencyBuckets(),
		}),
		queue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pyexec_queue_wait_seconds", Help: "Time a request waited for a free worker.",
			Buckets: latencyBuckets(),
		}),
		execution: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pyexec_execution_duration_seconds", Help: "Time a script spent in its sandbox.",
			Buckets: latencyBuckets(),
		}),
	}
	m.toolCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pyexec_mcp_tool_calls_total",
		Help: "Calls of the run_python tool through /mcp, by outcome (error type, or ok).",
	}, []string{"outcome"})
	reg.MustRegister(m.requests, m.total, m.queue, m.execution, m.toolCalls)
	return m
}

func (m *Metrics) observeRequest(outcome string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(outcome, strconv.Itoa(status)).Inc()
	m.total.Observe(d.Seconds())
}

// countRequest counts an answer made before routing, whose duration is
// not known.
func (m *Metrics) countRequest(outcome string, status int) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(outcome, strconv.Itoa(status)).Inc()
}

func (m *Metrics) observeRun(queue, execution time.Duration) {
	if m == nil {
		return
	}
	m.queue.Observe(queue.Seconds())
	m.execution.Observe(execution.Seconds())
}

func (m *Metrics) countToolCall(outcome string) {
	if m == nil {
		return
	}
	m.toolCalls.WithLabelValues(outcome).Inc()
}
