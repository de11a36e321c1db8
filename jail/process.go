package jail

import (
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// placeScript puts the shell into each cgroup.procs file given before "--",
// then execs the rest: nsjail and all it starts are confined from the start.
const placeScript = `for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"`

// command is nsjail with args, started inside cg (when there are cgroups).
func (s *Spawner) command(cg *workerCgroup, args []string) *exec.Cmd {
	var cmd *exec.Cmd
	if procs := cg.procsFiles(); len(procs) > 0 {
		a := append([]string{"-c", placeScript, "sh"}, procs...)
		a = append(a, "--", s.nsjail)
		cmd = exec.Command("/bin/sh", append(a, args...)...)
	} else {
		cmd = exec.Command(s.nsjail, args...)
	}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	// Own process group, so a kill reaches everything nsjail itself forks;
	// and if the service dies, its jails die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// openPidfd opens a pidfd on pid, or returns nil (pid unknown, or gone).
func openPidfd(pid int) *os.File {
	if pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "pidfd")
}

// pidfdAlive reports whether the process behind pidfd has not exited
// within wait. Without a pidfd it is taken as gone.
func pidfdAlive(pidfd *os.File, wait time.Duration) bool {
	if pidfd == nil {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(wait.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 0
	}
}

// setPolicy moves pid to a scheduling class (nice 0 in it). A failure only
// costs speed, never isolation, so it is ignored.
func setPolicy(pid int, policy uint32) {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}
	_ = unix.SchedSetAttr(pid, &attr, 0)
}
