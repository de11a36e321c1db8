package jail

import (
	"fmt"
	"strings"
)

// Isolation is how scripts are separated from one another. The zero value
// is IsolationStrict; the service's default is IsolationFork.
type Isolation uint8

// Isolation modes.
const (
	// IsolationStrict gives every script a jail and an interpreter of its
	// own, started ahead of time and used once.
	IsolationStrict Isolation = iota
	// IsolationFork keeps one jail per service, whose zygote makes a child
	// per script in fresh mount, PID, IPC, UTS and network namespaces and
	// a cgroup of its own, used once.
	IsolationFork
)

func (i Isolation) String() string {
	switch i {
	case IsolationStrict:
		return "strict"
	case IsolationFork:
		return "fork"
	}
	return fmt.Sprintf("Isolation(%d)", i)
}

// ParseIsolation reads "strict" or "fork".
func ParseIsolation(s string) (Isolation, error) { return parse(s, IsolationStrict, IsolationFork) }

// Validation is the policy the harness checks a script against before
// running it. The zero value is ValidationStandard.
type Validation uint8

// Validation policies.
const (
	// ValidationStandard refuses the calls and imports listed in the
	// README, as a first line of defence in front of the jail.
	ValidationStandard Validation = iota
	// ValidationMinimal checks only that the script defines main.
	ValidationMinimal
)

func (v Validation) String() string {
	switch v {
	case ValidationStandard:
		return "standard"
	case ValidationMinimal:
		return "minimal"
	}
	return fmt.Sprintf("Validation(%d)", v)
}

// ParseValidation reads "standard" or "minimal".
func ParseValidation(s string) (Validation, error) {
	return parse(s, ValidationStandard, ValidationMinimal)
}

// CgroupMode is the cgroup version used to limit workers. As a wish (in
// Config) the zero value, CgroupAuto, takes what the host offers; as a fact
// (in /health) it is CgroupV1, CgroupV2 or CgroupNone.
type CgroupMode uint8

// Cgroup modes.
const (
	CgroupAuto CgroupMode = iota
	CgroupV1
	CgroupV2
	// CgroupNone uses no cgroup: memory and processes are limited by
	// rlimits alone.
	CgroupNone
)

func (m CgroupMode) String() string {
	switch m {
	case CgroupAuto:
		return "auto"
	case CgroupV1:
		return "v1"
	case CgroupV2:
		return "v2"
	case CgroupNone:
		return "none"
	}
	return fmt.Sprintf("CgroupMode(%d)", m)
}

// ParseCgroupMode reads "auto", "v1", "v2" or "none".
func ParseCgroupMode(s string) (CgroupMode, error) {
	return parse(s, CgroupAuto, CgroupV1, CgroupV2, CgroupNone)
}

// parse returns the value among all whose name is s.
func parse[T fmt.Stringer](s string, all ...T) (T, error) {
	names := make([]string, len(all))
	for i, v := range all {
		if v.String() == s {
			return v, nil
		}
		names[i] = v.String()
	}
	var zero T
	return zero, fmt.Errorf("%q: want %s or %s", s, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}
