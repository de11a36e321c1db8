package main

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBareFork(t *testing.T) {
	n, cpu, wall, err := parseBareFork([]byte(`{"forks": 500, "cpu_s": 0.41, "wall_s": 0.52, "modules": "numpy,pandas"}` + "\n"))
	require.NoError(t, err)
	assert.Equal(t, 500, n)
	assert.Equal(t, 0.41, cpu)
	assert.Equal(t, 0.52, wall)
	for name, bad := range map[string]string{
		"not JSON":     "Traceback (most recent call last):",
		"no forks":     `{"forks": 0, "cpu_s": 0.1, "wall_s": 0.1}`,
		"no CPU":       `{"forks": 5, "wall_s": 0.1}`,
		"zero CPU":     `{"forks": 5, "cpu_s": 0, "wall_s": 0.1}`,
		"no wall time": `{"forks": 5, "cpu_s": 0.1}`,
		"empty":        "",
	} {
		_, _, _, err := parseBareFork([]byte(bad))
		assert.Error(t, err, name)
	}
}

// TestMeasureBareFork runs the embedded measurement with Debian's python3
// (which make test installs), importing only json: numpy and pandas are in
// the jail's virtualenv, which a plain go test may not have.
func TestMeasureBareFork(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is not installed (make test installs it)")
		}
		t.Skip("python3 is not installed")
	}
	bf, err := measureBareFork(context.Background(), python, 20, 3, "json")
	require.NoError(t, err)
	assert.Equal(t, 20, bf.Forks)
	assert.Equal(t, 3, bf.Rounds)
	assert.Greater(t, bf.CPU, 0.0)
	assert.Less(t, bf.CPU, 1.0, "a fork of a small interpreter takes well under a CPU-second")
	assert.Greater(t, bf.Wall, 0.0)

	_, err = measureBareFork(context.Background(), python, 5, 1, "no_such_module_here")
	assert.ErrorContains(t, err, "No module named", "a failed import is reported with the interpreter's words")
}
