package jail

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// The worker's system call filter as a classic BPF program, for a process
// that installs it on itself (seccomp(2) or prctl(PR_SET_SECCOMP)). It
// refuses what seccompPolicy refuses: deniedSyscalls with EPERM, clone with
// a namespace flag with EPERM, clone3 with ENOSYS. A call made through
// another ABI than the machine's own (i386 or x32 on x86_64, AArch32 on
// arm64) never reaches the lists, whose numbers mean other calls there.
//
// The program is one comparison and one return per refused number, so no
// jump goes further than the next instruction but one and its length grows
// by two per name: far from the kernel's limit of BPF_MAXINSNS.

// sockFilter is struct sock_filter.
type sockFilter struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

// sockFilterSize is the size of struct sock_filter.
const sockFilterSize = 8

// maxFilterLen is BPF_MAXINSNS, the longest program the kernel accepts.
const maxFilterLen = 4096

// Offsets in struct seccomp_data: the call's number, its ABI, and the low
// half of its first argument (the machines supported are little-endian).
const (
	seccompDataNr      = 0
	seccompDataArch    = 4
	seccompDataArg0Low = 16
)

// x32SyscallBit is set in the number of every x32 call on x86_64.
const x32SyscallBit = 0x40000000

// The instructions the program uses.
const (
	bpfLoadWord = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJumpEq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJumpGe   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfJumpSet  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfReturn   = unix.BPF_RET | unix.BPF_K
)

// seccompArch is what the filter needs to know of a machine.
type seccompArch struct {
	name  string
	audit uint32 // the AUDIT_ARCH_ value of the machine's own ABI
	x32   bool   // numbers with x32SyscallBit are a second ABI to refuse
	// numbers holds, for every name deniedSyscalls uses, its numbers on
	// this machine; an empty entry is a call the machine does not have.
	numbers       map[string][]uint32
	clone, clone3 uint32
}

// seccompProgram compiles the worker's filter for this machine into the
// bytes of its struct sock_filter array, in native byte order: what the
// harness's install_seccomp takes.
func seccompProgram() ([]byte, error) {
	arch, err := nativeSeccompArch()
	if err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	prog, err := buildFilter(arch)
	if err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	return encodeFilter(prog), nil
}

func buildFilter(arch seccompArch) ([]sockFilter, error) {
	prog := []sockFilter{
		stmt(bpfLoadWord, seccompDataArch),
		jump(bpfJumpEq, arch.audit, 1, 0),
		stmt(bpfReturn, unix.SECCOMP_RET_KILL_PROCESS),
		stmt(bpfLoadWord, seccompDataNr),
	}
	if arch.x32 {
		prog = append(prog, jump(bpfJumpGe, x32SyscallBit, 0, 1), returnErrno(unix.EPERM))
	}
	for _, name := range deniedSyscalls() {
		nrs, ok := arch.numbers[name]
		if !ok {
			return nil, fmt.Errorf("no system call number for %q on %s", name, arch.name)
		}
		for _, nr := range nrs {
			prog = append(prog, jump(bpfJumpEq, nr, 0, 1), returnErrno(unix.EPERM))
		}
	}
	prog = append(prog,
		jump(bpfJumpEq, arch.clone, 0, 4),
		stmt(bpfLoadWord, seccompDataArg0Low),
		jump(bpfJumpSet, namespaceCloneFlags, 0, 1),
		returnErrno(unix.EPERM),
		stmt(bpfReturn, unix.SECCOMP_RET_ALLOW),
		jump(bpfJumpEq, arch.clone3, 0, 1),
		returnErrno(unix.ENOSYS),
		stmt(bpfReturn, unix.SECCOMP_RET_ALLOW),
	)
	if len(prog) > maxFilterLen {
		return nil, fmt.Errorf("%d instructions, more than the kernel's %d", len(prog), maxFilterLen)
	}
	return prog, nil
}

func encodeFilter(prog []sockFilter) []byte {
	out := make([]byte, 0, len(prog)*sockFilterSize)
	for _, ins := range prog {
		out = binary.NativeEndian.AppendUint16(out, ins.code)
		out = append(out, ins.jt, ins.jf)
		out = binary.NativeEndian.AppendUint32(out, ins.k)
	}
	return out
}

func stmt(code uint16, k uint32) sockFilter { return sockFilter{code: code, k: k} }

func jump(code uint16, k uint32, jt, jf uint8) sockFilter {
	return sockFilter{code: code, jt: jt, jf: jf, k: k}
}

func returnErrno(errno unix.Errno) sockFilter {
	return stmt(bpfReturn, unix.SECCOMP_RET_ERRNO|uint32(errno))
}
