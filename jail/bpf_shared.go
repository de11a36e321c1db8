//go:build amd64 || arm64

package jail

import "golang.org/x/sys/unix"

// sharedSyscallNumbers are the numbers, for every name deniedSyscalls uses
// that both 64-bit machines have, of the machine this is built for (the
// constants differ between them); each machine's file adds the rest.
// umount is umount2: neither machine has the older umount.
func sharedSyscallNumbers(extra map[string][]uint32) map[string][]uint32 {
	numbers := map[string][]uint32{
		"ptrace":            {unix.SYS_PTRACE},
		"process_vm_readv":  {unix.SYS_PROCESS_VM_READV},
		"process_vm_writev": {unix.SYS_PROCESS_VM_WRITEV},
		"kcmp":              {unix.SYS_KCMP},
		"pidfd_getfd":       {unix.SYS_PIDFD_GETFD},
		"mount":             {unix.SYS_MOUNT},
		"umount":            {unix.SYS_UMOUNT2},
		"pivot_root":        {unix.SYS_PIVOT_ROOT},
		"chroot":            {unix.SYS_CHROOT},
		"unshare":           {unix.SYS_UNSHARE},
		"setns":             {unix.SYS_SETNS},
		"fsopen":            {unix.SYS_FSOPEN},
		"fsmount":           {unix.SYS_FSMOUNT},
		"fsconfig":          {unix.SYS_FSCONFIG},
		"fspick":            {unix.SYS_FSPICK},
		"move_mount":        {unix.SYS_MOVE_MOUNT},
		"open_tree":         {unix.SYS_OPEN_TREE},
		"mount_setattr":     {unix.SYS_MOUNT_SETATTR},
		"open_by_handle_at": {unix.SYS_OPEN_BY_HANDLE_AT},
		"name_to_handle_at": {unix.SYS_NAME_TO_HANDLE_AT},
		"bpf":               {unix.SYS_BPF},
		"perf_event_open":   {unix.SYS_PERF_EVENT_OPEN},
		"userfaultfd":       {unix.SYS_USERFAULTFD},
		"keyctl":            {unix.SYS_KEYCTL},
		"add_key":           {unix.SYS_ADD_KEY},
		"request_key":       {unix.SYS_REQUEST_KEY},
		"io_uring_setup":    {unix.SYS_IO_URING_SETUP},
		"io_uring_enter":    {unix.SYS_IO_URING_ENTER},
		"io_uring_register": {unix.SYS_IO_URING_REGISTER},
		"mq_open":           {unix.SYS_MQ_OPEN},
		"mq_unlink":         {unix.SYS_MQ_UNLINK},
		"mq_timedsend":      {unix.SYS_MQ_TIMEDSEND},
		"mq_timedreceive":   {unix.SYS_MQ_TIMEDRECEIVE},
		"mq_notify":         {unix.SYS_MQ_NOTIFY},
		"mq_getsetattr":     {unix.SYS_MQ_GETSETATTR},
		"kexec_load":        {unix.SYS_KEXEC_LOAD},
		"kexec_file_load":   {unix.SYS_KEXEC_FILE_LOAD},
		"init_module":       {unix.SYS_INIT_MODULE},
		"finit_module":      {unix.SYS_FINIT_MODULE},
		"delete_module":     {unix.SYS_DELETE_MODULE},
		"reboot":            {unix.SYS_REBOOT},
		"swapon":            {unix.SYS_SWAPON},
		"swapoff":           {unix.SYS_SWAPOFF},
		"acct":              {unix.SYS_ACCT},
		"quotactl":          {unix.SYS_QUOTACTL},
		"syslog":            {unix.SYS_SYSLOG},
		"vhangup":           {unix.SYS_VHANGUP},
		"settimeofday":      {unix.SYS_SETTIMEOFDAY},
		"clock_settime":     {unix.SYS_CLOCK_SETTIME},
		"adjtimex":          {unix.SYS_ADJTIMEX},
		"clock_adjtime":     {unix.SYS_CLOCK_ADJTIME},
		"lookup_dcookie":    {unix.SYS_LOOKUP_DCOOKIE},
		"nfsservctl":        {unix.SYS_NFSSERVCTL},
	}
	for name, nrs := range extra {
		numbers[name] = nrs
	}
	return numbers
}
