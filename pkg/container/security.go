package container

import (
	"fmt"
	"slices"

	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// checkPrivileged refuses a privileged container in a pod that is not privileged, as
// containerd does: kubelet sets the pod's flag when any of its containers is privileged,
// so a mismatch is a request that bypassed the pod-level policy.
func checkPrivileged(cfg Config, sb *sandbox.Sandbox) error {
	if cfg.Privileged && !sb.Config.Privileged {
		return fmt.Errorf("privileged container in pod sandbox %s, which is not privileged: %w", sb.ID, store.ErrInvalidArgument)
	}
	return nil
}

// securityOptions is the runtime's view of the container's security context; "ALL" and
// privileged mean the capabilities this process can hand down.
func securityOptions(cfg Config) (runtime.Security, error) {
	sec := runtime.Security{
		Privileged: cfg.Privileged,
		CapAdd:     cfg.CapAdd, CapDrop: cfg.CapDrop, AmbientCaps: cfg.AmbientCaps,
		NoNewPrivs: cfg.NoNewPrivs, ReadonlyRootfs: cfg.ReadonlyRootfs,
		MaskedPaths: cfg.MaskedPaths, ReadonlyPaths: cfg.ReadonlyPaths,
	}
	// Only "ALL" and privileged need the list, and reading it costs a /proc read and a
	// probe of the kernel's capabilities: not on every create.
	if cfg.Privileged || slices.Contains(cfg.CapAdd, runtime.CapAll) {
		all, err := runtime.AvailableCapabilities()
		if err != nil {
			return runtime.Security{}, err
		}
		sec.AllCaps = all
	}
	return sec, nil
}
