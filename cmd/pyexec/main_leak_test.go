package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/pyexec/pyexec/internal/testenv"
)

// TestMain fails the package's tests if any goroutine outlives them. Run
// with PYEXEC_TEST_AS_CLI=1, the test binary is the command itself, so that
// tests can start it as a subprocess (pyexec mcp).
func TestMain(m *testing.M) {
	if os.Getenv("PYEXEC_TEST_AS_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
