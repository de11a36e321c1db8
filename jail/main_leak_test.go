package jail

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pyexec/pyexec/internal/fakesandbox"
	"github.com/pyexec/pyexec/internal/testenv"
)

// TestMain fails the package's tests if any goroutine outlives them. The
// test binary also plays the fake sandbox's programs (see fakesandbox).
func TestMain(m *testing.M) {
	fakesandbox.Main()
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
