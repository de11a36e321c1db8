package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpawnBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/pyexec/pyexec/jail
cpu: Some CPU @ 2.20GHz
BenchmarkSpawn-2   	     160	 140625000 ns/op	         0.4512 busy-CPU-s/spawn	         7.111 spawns/s
PASS
ok  	github.com/pyexec/pyexec/jail	45.210s
`
	rate, cpu, err := parseSpawnBench(out)
	require.NoError(t, err)
	assert.Equal(t, 7.111, rate)
	assert.Equal(t, 0.4512, cpu)

	rate, _, err = parseSpawnBench("BenchmarkSpawn 3 1 ns/op 2.5 spawns/s 0.5 busy-CPU-s/spawn\n")
	require.NoError(t, err, "without GOMAXPROCS suffix")
	assert.Equal(t, 2.5, rate)

	for name, bad := range map[string]string{
		"skipped":          "--- SKIP: BenchmarkSpawn\n    spawn_bench_test.go:31: the real-jail tests need root\nPASS\n",
		"another bench":    "BenchmarkSpawnFast-2 10 1 ns/op 9 spawns/s 0.1 busy-CPU-s/spawn\n",
		"a metric missing": "BenchmarkSpawn-2 10 100 ns/op 7.1 spawns/s\n",
		"not a number":     "BenchmarkSpawn-2 10 100 ns/op x spawns/s 0.1 busy-CPU-s/spawn\n",
		"empty":            "",
	} {
		_, _, err := parseSpawnBench(bad)
		assert.Error(t, err, name)
	}
}
