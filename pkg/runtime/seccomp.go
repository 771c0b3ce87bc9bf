package runtime

import specs "github.com/opencontainers/runtime-spec/specs-go"

// SpecSeccomp is the seccomp profile of a container spec, nil when it has none. Exec'd
// processes get it as well (as runc does): a filter only on the init would let anyone
// with exec rights run unfiltered in the container.
func SpecSeccomp(s *specs.Spec) *specs.LinuxSeccomp {
	if s == nil || s.Linux == nil {
		return nil
	}
	return s.Linux.Seccomp
}
