package jail

import "golang.org/x/sys/unix"

// nativeSeccompArch describes x86_64 for the worker's filter: the i386 ABI
// (int 0x80) and x32 are other ways in, refused as a whole.
func nativeSeccompArch() (seccompArch, error) {
	return seccompArch{
		name:   "amd64",
		audit:  unix.AUDIT_ARCH_X86_64,
		x32:    true,
		clone:  unix.SYS_CLONE,
		clone3: unix.SYS_CLONE3,
		// sysctl is _sysctl.
		numbers: sharedSyscallNumbers(map[string][]uint32{
			"iopl":   {unix.SYS_IOPL},
			"ioperm": {unix.SYS_IOPERM},
			"uselib": {unix.SYS_USELIB},
			"sysctl": {unix.SYS__SYSCTL},
		}),
	}, nil
}
