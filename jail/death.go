package jail

import (
	"fmt"
	"syscall"

	"github.com/pyexec/pyexec"
)

// death is what is known of a jailed process that ended without answering:
// whether its cgroup saw an OOM kill, and (when known) its signal or exit
// status, from the kernel through whoever waited for it.
type death struct {
	oom        bool
	cgroupNone bool
	memoryMB   int
	known      bool
	signal     int
	code       int
}

// error is the one classification of such deaths, for every kind of worker.
func (d death) error() *pyexec.Error {
	if d.oom {
		return pyexec.Errorf(pyexec.CodeMemoryLimit, "script exceeded the memory limit (%d MB)", d.memoryMB)
	}
	sig := syscall.Signal(d.signal)
	switch {
	case !d.known:
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process exited before answering (unknown status)")
	case sig == syscall.SIGXCPU:
		return pyexec.Errorf(pyexec.CodeTimeout, "script exceeded its CPU time limit")
	case sig == syscall.SIGKILL && d.cgroupNone:
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process was killed (possibly out of memory)")
	case sig != 0:
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process died of signal %d (%v)", d.signal, sig)
	default:
		return pyexec.Errorf(pyexec.CodeSandbox, "the sandboxed process exited before answering (%s)", exitCodeText(d.code))
	}
}

func exitCodeText(code int) string { return fmt.Sprintf("exit status %d", code) }
