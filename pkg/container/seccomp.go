package container

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/seccomp"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// setSeccomp resolves the container's seccomp choice into spec.Linux.Seccomp, once, at
// create time: a Localhost file read now is what the container and every exec into it
// get, even if the file changes later. The capability-dependent rules of the profile
// follow the spec's bounding set, or the default set when the spec has none.
func setSeccomp(spec *specs.Spec, cfg Config) error {
	if cfg.Seccomp == nil || spec.Linux == nil {
		return nil
	}
	caps := runtime.DefaultCapabilities()
	if p := spec.Process; p != nil && p.Capabilities != nil {
		caps = p.Capabilities.Bounding
	}
	prof, err := seccomp.Resolve(*cfg.Seccomp, caps)
	if err != nil {
		if errors.Is(err, seccomp.ErrInvalidProfile) {
			return fmt.Errorf("security_context.seccomp %s profile: %w: %w", cfg.Seccomp.Kind, err, store.ErrInvalidArgument)
		}
		return fmt.Errorf("seccomp profile: %w", err)
	}
	spec.Linux.Seccomp = prof
	return nil
}
