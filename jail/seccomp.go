package jail

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// deniedSyscalls are refused with EPERM inside the jail: what a data script
// never needs and an escape attempt often does. Namespace-creating clone
// flags are refused the same way; clone3, whose flags a filter cannot read,
// answers ENOSYS so the C library falls back to clone.
func deniedSyscalls() []string {
	return []string{
		// Inspecting or writing other processes.
		"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
		// Mounts and namespaces.
		"mount", "umount", "pivot_root", "chroot", "unshare", "setns",
		"fsopen", "fsmount", "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr",
		"open_by_handle_at", "name_to_handle_at",
		// Kernel attack surface a script has no use for.
		"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
		"io_uring_setup", "io_uring_enter", "io_uring_register",
		// POSIX message queues outlive their creator in the jail's IPC
		// namespace and cannot be listed without a mount to clean them.
		"mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
		// The machine itself.
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup",
		"settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
		"iopl", "ioperm", "uselib", "lookup_dcookie", "sysctl", "nfsservctl",
	}
}

// namespaceCloneFlags are the clone flags that create a namespace (0x7e020000).
const namespaceCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// seccompPolicy renders the kafel policy nsjail compiles for every worker.
func seccompPolicy() string {
	return fmt.Sprintf("POLICY pyexec { ERRNO(%d) { %s, clone(flags) { (flags & %#x) != 0 } }, "+
		"ERRNO(%d) { clone3 } } USE pyexec DEFAULT ALLOW",
		unix.EPERM, strings.Join(deniedSyscalls(), ", "), namespaceCloneFlags, unix.ENOSYS)
}

// zygotePolicy renders the kafel policy of the fork-isolation zygote: a
// worker's, except that mount and namespace-creating clones are allowed (a
// child needs them before it installs the worker's own filter, compiled by
// seccompProgram).
func zygotePolicy() string {
	var denied []string
	for _, name := range deniedSyscalls() {
		if name != "mount" {
			denied = append(denied, name)
		}
	}
	return fmt.Sprintf("POLICY pyexec { ERRNO(%d) { %s }, ERRNO(%d) { clone3 } } USE pyexec DEFAULT ALLOW",
		unix.EPERM, strings.Join(denied, ", "), unix.ENOSYS)
}
