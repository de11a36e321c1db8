package jail

import "golang.org/x/sys/unix"

// nativeSeccompArch describes arm64 for the worker's filter: AArch32, the
// other way in, is refused by its audit value.
func nativeSeccompArch() (seccompArch, error) {
	return seccompArch{
		name:   "arm64",
		audit:  unix.AUDIT_ARCH_AARCH64,
		x32:    false,
		clone:  unix.SYS_CLONE,
		clone3: unix.SYS_CLONE3,
		// iopl, ioperm, uselib and sysctl do not exist here.
		numbers: sharedSyscallNumbers(map[string][]uint32{
			"iopl":   {},
			"ioperm": {},
			"uselib": {},
			"sysctl": {},
		}),
	}, nil
}
