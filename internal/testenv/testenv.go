// Package testenv decides whether tests that need the real jail can run.
package testenv

import (
	"os"
	"testing"
)

// Python returns the interpreter for real-jail tests (PYEXEC_PYTHON, set by
// the Makefile). Without one the test is skipped, except under CI=true,
// where a missing jail is a failure: CI must never pass by skipping.
func Python(t testing.TB) string {
	t.Helper()
	p := os.Getenv("PYEXEC_PYTHON")
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PYEXEC_PYTHON is not set: the real-jail tests must run in CI (use make test)")
		}
		t.Skip("PYEXEC_PYTHON is not set; run through make test to use the real jail")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("PYEXEC_PYTHON=%s: %v", p, err)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the real-jail tests need root")
		}
		t.Skip("the real-jail tests need root")
	}
	return p
}
