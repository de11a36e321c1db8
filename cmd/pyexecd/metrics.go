package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pyexec/pyexec"
)

// poolCollector reads the pool's state at scrape time.
type poolCollector struct {
	status                      func() (pyexec.PoolStatus, bool, string)
	workers, size               *prometheus.Desc
	spawned, failures, recycled *prometheus.Desc
}

func newPoolCollector(status func() (pyexec.PoolStatus, bool, string)) *poolCollector {
	return &poolCollector{
		status:   status,
		workers:  prometheus.NewDesc("pyexec_pool_workers", "Workers by state: idle (warm, waiting), busy (running a script), spawning.", []string{"state"}, nil),
		size:     prometheus.NewDesc("pyexec_pool_size", "Configured number of warm workers.", nil, nil),
		spawned:  prometheus.NewDesc("pyexec_spawns_total", "Workers started successfully.", nil, nil),
		failures: prometheus.NewDesc("pyexec_spawn_failures_total", "Worker starts that failed.", nil, nil),
		recycled: prometheus.NewDesc("pyexec_recycles_total", "Idle workers replaced for age or found dead.", nil, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.workers, c.size, c.spawned, c.failures, c.recycled} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s, _, _ := c.status()
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(s.Idle), "idle")
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(s.Busy), "busy")
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(s.Starting), "spawning")
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.Size))
	ch <- prometheus.MustNewConstMetric(c.spawned, prometheus.CounterValue, float64(s.Spawned))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(s.SpawnFailures))
	ch <- prometheus.MustNewConstMetric(c.recycled, prometheus.CounterValue, float64(s.Recycled))
}

// spawnHistogram times every spawn, successful or not.
func spawnHistogram(reg *prometheus.Registry) func(time.Duration, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pyexec_spawn_duration_seconds",
		Help:    "Time to start a worker: nsjail, Python and the numpy and pandas imports.",
		Buckets: []float64{.05, .1, .2, .3, .5, .75, 1, 2, 5, 10, 30},
	}, []string{"result"})
	reg.MustRegister(h)
	return func(d time.Duration, err error) {
		result := "ok"
		if err != nil {
			result = "error"
		}
		h.WithLabelValues(result).Observe(d.Seconds())
	}
}
