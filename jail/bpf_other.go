//go:build !amd64 && !arm64

package jail

import (
	"fmt"
	"runtime"
)

// nativeSeccompArch reports that no filter is known for this machine: its
// system call numbers and audit value are not described here.
func nativeSeccompArch() (seccompArch, error) {
	return seccompArch{}, fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)
}
