// Package testenv decides whether tests that need the real jail can run.
package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// Python returns the interpreter for real-jail tests (PYEXEC_PYTHON, set by
// the Makefile). Without one the test is skipped, except under CI=true,
// where a missing jail is a failure: CI must never pass by skipping.
func Python(t testing.TB) string {
	t.Helper()
	p := Interpreter(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the real-jail tests need root")
		}
		t.Skip("the real-jail tests need root")
	}
	return p
}

// Interpreter returns the virtualenv's interpreter (PYEXEC_PYTHON, set by
// the Makefile) for tests that run it outside the jail, which need no root.
// Without one the test is skipped, except under CI=true, where it fails.
func Interpreter(t testing.TB) string {
	t.Helper()
	p := os.Getenv("PYEXEC_PYTHON")
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PYEXEC_PYTHON is not set: these tests must run in CI (use make test)")
		}
		t.Skip("PYEXEC_PYTHON is not set; run through make test")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("PYEXEC_PYTHON=%s: %v", p, err)
	}
	return p
}

// LeakOptions are the goroutines goleak may ignore: they belong to fasthttp
// and fiber, which start them once per process (the Date header clock, the
// rate limiter's store) or let them notice a stop on their next tick (the
// worker pool's cleaner).
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/gofiber/fiber/v2/internal/memory.(*Storage).gc"),
		// The same clock goroutine under its inlined and plain names.
		goleak.IgnoreAnyFunction("github.com/gofiber/fiber/v2/internal/memory.New.StartTimeStampUpdater.func1.1"),
		goleak.IgnoreAnyFunction("github.com/gofiber/fiber/v2/utils.StartTimeStampUpdater.func1.1"),
	}
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	text := string(data)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+2:])
	return len(fields) > 0 && fields[0] != "Z"
}
