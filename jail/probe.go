package jail

import (
	"os"
	"strconv"
	"strings"
)

// Capability is one thing the host must allow for the sandbox.
type Capability struct {
	Name   string
	OK     bool
	Detail string
}

// Capabilities reports what this host allows, for the start-up log. It only
// reads /proc; whether a worker really starts is proven by the first spawn.
func (s *Spawner) Capabilities() []Capability {
	var caps []Capability
	userns := Capability{Name: "user namespaces", OK: exists("/proc/self/ns/user")}
	if data, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil {
		n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		userns.OK = userns.OK && n > 0
		userns.Detail = "max " + strconv.Itoa(n)
	}
	caps = append(caps, userns)
	for _, ns := range []struct{ name, file string }{
		{"pid namespaces", "pid"}, {"mount namespaces", "mnt"}, {"network namespaces", "net"},
		{"ipc namespaces", "ipc"}, {"uts namespaces", "uts"}, {"cgroup namespaces", "cgroup"},
	} {
		caps = append(caps, Capability{Name: ns.name, OK: exists("/proc/self/ns/" + ns.file)})
	}
	caps = append(caps, Capability{Name: "cgroups", OK: s.cg.mode != CgroupNone, Detail: s.cg.mode.String()})
	seccomp := Capability{Name: "seccomp"}
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
				seccomp.OK = true
				seccomp.Detail = "mode of the service: " + strings.TrimSpace(v)
			}
		}
	}
	return append(caps, seccomp)
}
