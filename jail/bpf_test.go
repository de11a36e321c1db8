package jail

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// decodeFilter reads back what encodeFilter wrote.
func decodeFilter(t *testing.T, blob []byte) []sockFilter {
	t.Helper()
	require.Zero(t, len(blob)%sockFilterSize, "a whole number of instructions")
	prog := make([]sockFilter, 0, len(blob)/sockFilterSize)
	for b := blob; len(b) > 0; b = b[sockFilterSize:] {
		prog = append(prog, sockFilter{
			code: binary.NativeEndian.Uint16(b),
			jt:   b[2],
			jf:   b[3],
			k:    binary.NativeEndian.Uint32(b[4:]),
		})
	}
	return prog
}

func nativeFilter(t *testing.T) (seccompArch, []sockFilter) {
	t.Helper()
	arch, err := nativeSeccompArch()
	require.NoError(t, err)
	blob, err := seccompProgram()
	require.NoError(t, err)
	return arch, decodeFilter(t, blob)
}

// seccompCall is a struct seccomp_data as the kernel lays it out.
type seccompCall struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

// evalFilter runs prog on call as the kernel would and returns its action.
// Every jump goes forward, so the loop ends.
func evalFilter(t *testing.T, prog []sockFilter, call seccompCall) uint32 {
	t.Helper()
	var data [64]byte
	binary.NativeEndian.PutUint32(data[0:], call.nr)
	binary.NativeEndian.PutUint32(data[4:], call.arch)
	for i, a := range call.args {
		binary.NativeEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		ins := prog[pc]
		cond := false
		switch ins.code {
		case bpfLoadWord:
			require.True(t, ins.k%4 == 0 && ins.k < uint32(len(data)), "load at %d", ins.k)
			acc = binary.NativeEndian.Uint32(data[ins.k:])
			continue
		case bpfReturn:
			return ins.k
		case bpfJumpEq:
			cond = acc == ins.k
		case bpfJumpGe:
			cond = acc >= ins.k
		case bpfJumpSet:
			cond = acc&ins.k != 0
		default:
			t.Fatalf("instruction %d: unknown code %#x", pc, ins.code)
		}
		if cond {
			pc += int(ins.jt)
		} else {
			pc += int(ins.jf)
		}
	}
	t.Fatalf("the program ran past its end for %+v", call)
	return 0
}

func TestBPFFilter_Shape(t *testing.T) {
	arch, prog := nativeFilter(t)
	require.NotEmpty(t, prog)
	assert.LessOrEqual(t, len(prog), maxFilterLen)
	// The ABI is checked before anything reads a number that depends on it.
	require.GreaterOrEqual(t, len(prog), 4)
	assert.Equal(t, stmt(bpfLoadWord, seccompDataArch), prog[0])
	assert.Equal(t, jump(bpfJumpEq, arch.audit, 1, 0), prog[1])
	assert.Equal(t, stmt(bpfReturn, unix.SECCOMP_RET_KILL_PROCESS), prog[2])
	assert.Equal(t, stmt(bpfLoadWord, seccompDataNr), prog[3])
	assert.Equal(t, stmt(bpfReturn, unix.SECCOMP_RET_ALLOW), prog[len(prog)-1], "what no rule refuses is allowed")
	for pc, ins := range prog {
		switch ins.code {
		case bpfJumpEq, bpfJumpGe, bpfJumpSet:
			assert.Less(t, pc+1+int(max(ins.jt, ins.jf)), len(prog), "instruction %d jumps past the end", pc)
		case bpfLoadWord, bpfReturn:
			assert.Zero(t, ins.jt|ins.jf, "instruction %d", pc)
		default:
			t.Errorf("instruction %d: unknown code %#x", pc, ins.code)
		}
	}
}

func TestBPFFilter_EncodesNativeStructSockFilter(t *testing.T) {
	blob, err := seccompProgram()
	require.NoError(t, err)
	// ld [4]: code 0x20, jt 0, jf 0, k 4, on the little-endian machines served.
	assert.Equal(t, []byte{0x20, 0, 0, 0, 4, 0, 0, 0}, blob[:sockFilterSize])
	prog := []sockFilter{jump(bpfJumpEq, 0x01020304, 7, 9)}
	assert.Equal(t, prog, decodeFilter(t, encodeFilter(prog)))
}

func TestBPFFilter_EveryDeniedNameHasAnEntry(t *testing.T) {
	arch, err := nativeSeccompArch()
	require.NoError(t, err)
	denied := deniedSyscalls()
	for _, name := range denied {
		assert.Contains(t, arch.numbers, name, "%s has no entry on %s", name, arch.name)
	}
	for name := range arch.numbers {
		assert.True(t, slices.Contains(denied, name), "%s is in the %s table but not in deniedSyscalls", name, arch.name)
	}
	assert.Equal(t, []uint32{unix.SYS_UMOUNT2}, arch.numbers["umount"])
}

func TestBPFFilter_ActsAsTheKafelPolicy(t *testing.T) {
	arch, prog := nativeFilter(t)
	eperm := uint32(unix.SECCOMP_RET_ERRNO | unix.EPERM)
	act := func(nr uint32, args ...uint64) uint32 {
		call := seccompCall{nr: nr, arch: arch.audit}
		copy(call.args[:], args)
		return evalFilter(t, prog, call)
	}
	denied := map[uint32]bool{}
	for _, nrs := range arch.numbers {
		for _, nr := range nrs {
			denied[nr] = true
			assert.Equal(t, eperm, act(nr), "system call %d", nr)
		}
	}
	t.Run("others are allowed", func(t *testing.T) {
		for nr := uint32(0); nr < 1024; nr++ {
			if !denied[nr] && nr != arch.clone && nr != arch.clone3 {
				require.Equal(t, uint32(unix.SECCOMP_RET_ALLOW), act(nr), "system call %d", nr)
			}
		}
	})
	t.Run("clone3 answers ENOSYS", func(t *testing.T) {
		assert.Equal(t, uint32(unix.SECCOMP_RET_ERRNO|unix.ENOSYS), act(arch.clone3))
	})
	t.Run("clone with a namespace flag is refused", func(t *testing.T) {
		for bit := uint64(1); bit < 1<<32; bit <<= 1 {
			if bit&namespaceCloneFlags != 0 {
				assert.Equal(t, eperm, act(arch.clone, bit|uint64(unix.SIGCHLD)), "flags %#x", bit)
			}
		}
	})
	t.Run("fork and thread clones are allowed", func(t *testing.T) {
		fork := uint64(unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID | unix.SIGCHLD)
		thread := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
			unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID)
		allow := uint32(unix.SECCOMP_RET_ALLOW)
		assert.Equal(t, allow, act(arch.clone, fork))
		assert.Equal(t, allow, act(arch.clone, thread))
		assert.Equal(t, allow, act(arch.clone, 1<<40|fork), "bits above the first word are not namespace flags")
	})
	t.Run("another ABI is killed", func(t *testing.T) {
		for _, other := range []uint32{0, unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_AARCH64} {
			if other == arch.audit {
				continue
			}
			for _, nr := range []uint32{0, unix.SYS_GETPID, arch.clone} {
				assert.Equal(t, uint32(unix.SECCOMP_RET_KILL_PROCESS), evalFilter(t, prog, seccompCall{nr: nr, arch: other}),
					"arch %#x, call %d", other, nr)
			}
		}
	})
	t.Run("x32 calls are refused", func(t *testing.T) {
		if !arch.x32 {
			t.Skipf("%s has no x32 ABI", arch.name)
		}
		for _, nr := range []uint32{unix.SYS_GETPID, unix.SYS_READ, arch.clone} {
			assert.Equal(t, eperm, act(x32SyscallBit|nr), "x32 call %d", nr)
		}
	})
}

func TestBPFFilter_UnknownNameOrTooLongIsAnError(t *testing.T) {
	arch, err := nativeSeccompArch()
	require.NoError(t, err)
	missing := arch
	missing.numbers = map[string][]uint32{}
	_, err = buildFilter(missing)
	assert.ErrorContains(t, err, `no system call number for "ptrace"`)

	long := arch
	long.numbers = map[string][]uint32{}
	for name, nrs := range arch.numbers {
		long.numbers[name] = nrs
	}
	long.numbers["ptrace"] = make([]uint32, maxFilterLen/2)
	_, err = buildFilter(long)
	assert.ErrorContains(t, err, "more than the kernel's 4096")
}
