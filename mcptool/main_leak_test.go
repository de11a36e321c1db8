package mcptool

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pyexec/pyexec/internal/testenv"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
