package jail

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/testenv"
)

// spawnConcurrency is how many spawns BenchmarkSpawn keeps in flight, as
// many as the benchmark report's clients.
const spawnConcurrency = 8

// BenchmarkSpawn measures what strict isolation pays per script, with no
// HTTP and no pool: spawn a worker, run a trivial script, kill it, eight at
// a time. Besides ns/op (wall time over all spawns) it reports spawns/s and
// busy-CPU-s/spawn, the whole machine's busy CPU time per spawn (nsjail and
// the interpreter run outside this process, so the benchmark's own CPU time
// would miss them). `make bench` runs it and puts both in
// docs/BENCHMARKS.md.
func BenchmarkSpawn(b *testing.B) {
	sp, err := NewSpawner(withLimits(Config{PythonPath: testenv.Python(b)}), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	ctx := context.Background()
	req := pyexec.Request{ID: "bench", Script: "def main():\n    return 1\n", Timeout: 5 * time.Second}
	var next atomic.Int64
	var firstErr atomic.Value
	b.ResetTimer()
	busy0, start := busySeconds(b), time.Now()
	var wg sync.WaitGroup
	for i := 0; i < spawnConcurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				w, err := sp.Spawn(ctx)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				resp, err := w.Run(ctx, req)
				w.Kill()
				if err == nil && resp.Error != nil {
					err = resp.Error
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed, busy := time.Since(start), busySeconds(b)-busy0
	b.StopTimer()
	if err, ok := firstErr.Load().(error); ok {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "spawns/s")
	b.ReportMetric(busy/float64(b.N), "busy-CPU-s/spawn")
}

// busySeconds is the CPU time the whole machine has spent busy (all but
// idle and iowait), from /proc/stat.
func busySeconds(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	var busy float64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %v", err)
		}
		busy += v
	}
	return busy / 100 // USER_HZ is 100 on Linux
}
