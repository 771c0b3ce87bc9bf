package seccomp

import (
	"fmt"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func goarch() string { return runtime.GOARCH }

// Apply compiles s for this machine and installs it on every thread of this process; a
// nil profile (Unconfined) installs nothing.
func Apply(s *specs.LinuxSeccomp) error {
	if s == nil {
		return nil
	}
	flags, err := Flags(s)
	if err != nil {
		return err
	}
	prog, err := Compile(s, goarch())
	if err != nil {
		return fmt.Errorf("compile seccomp profile: %w", err)
	}
	return Install(prog, flags)
}
