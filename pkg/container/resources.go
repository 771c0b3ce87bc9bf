package container

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// validateResources checks the requested resources for this host's cgroup mode before
// anything is created, so that a refused value leaves nothing behind.
func (m *Manager) validateResources(r *cgroups.Resources) error {
	if err := m.o.Cgroups.Validate(r); err != nil {
		return fmt.Errorf("linux.resources.%w: %w", err, store.ErrInvalidArgument)
	}
	return nil
}

// cgroupResources are the container cgroup's settings: the requested limits and the
// complete device access list, which starts from deny-all and the default devices and then
// allows what the spec's rules allow (the request's devices, or all of them for a
// privileged container). A device the init creates with mknod also gets "m", since the
// init runs inside the cgroup when it creates /dev.
func cgroupResources(cfg Config, spec *specs.Spec) *cgroups.Resources {
	var r cgroups.Resources
	if cfg.Resources != nil {
		r = *cfg.Resources
	}
	r.Devices = cgroups.DefaultDeviceRules()
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return &r
	}
	for _, d := range spec.Linux.Resources.Devices {
		r.Devices = append(r.Devices, cgroups.DeviceRule{
			Allow: d.Allow, Type: d.Type, Major: d.Major, Minor: d.Minor, Access: d.Access,
		})
	}
	for _, d := range spec.Linux.Devices {
		r.Devices = append(r.Devices, cgroups.DeviceRule{
			Allow: true, Type: d.Type, Major: &d.Major, Minor: &d.Minor, Access: "m",
		})
	}
	return &r
}

// applyResourcesToSpec records the container's limits in its OCI spec, so the spec stays
// the one complete description of the container (verbose status, later NRI adjustments).
func applyResourcesToSpec(spec *specs.Spec, cfg Config, hostOOMFloor int) {
	if cfg.OOMScoreAdj != nil && spec.Process != nil {
		v := max(*cfg.OOMScoreAdj, hostOOMFloor)
		spec.Process.OOMScoreAdj = &v
	}
	r := cfg.Resources
	if r == nil || spec.Linux == nil {
		return
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	lr := spec.Linux.Resources
	cpu := &specs.LinuxCPU{Cpus: r.CpusetCPUs, Mems: r.CpusetMems}
	if r.CPUShares != 0 {
		cpu.Shares = &r.CPUShares
	}
	if r.CPUQuota != 0 {
		cpu.Quota = &r.CPUQuota
	}
	if r.CPUPeriod != 0 {
		cpu.Period = &r.CPUPeriod
	}
	lr.CPU = cpu
	mem := &specs.LinuxMemory{}
	if r.MemoryLimit != 0 {
		mem.Limit = &r.MemoryLimit
	}
	if r.MemorySwapLimit != 0 {
		mem.Swap = &r.MemorySwapLimit
	}
	lr.Memory = mem
	lr.HugepageLimits = nil
	for _, h := range r.HugepageLimits {
		lr.HugepageLimits = append(lr.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	lr.Unified = r.Unified
}
