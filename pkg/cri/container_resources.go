package cri

import (
	"errors"
	"fmt"
	"maps"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
)

// oomScoreAdjRange is the kernel's range for /proc/<pid>/oom_score_adj.
const oomScoreAdjMin, oomScoreAdjMax = -1000, 1000

// linuxResources translates a container's LinuxContainerResources. field is the request
// path of the message (for example "config.linux.resources"), so errors name the exact
// field. It returns nil resources for a nil message. The values the cgroup mode decides
// (unified keys on v1, hugepage sizes of the host) are checked by the container manager.
func linuxResources(r *runtimeapi.LinuxContainerResources, field string) (*cgroups.Resources, *int, error) {
	if r == nil {
		return nil, nil, nil
	}
	for _, v := range []struct {
		name string
		n    int64
	}{
		{"cpu_shares", r.GetCpuShares()}, {"cpu_period", r.GetCpuPeriod()},
		{"memory_limit_in_bytes", r.GetMemoryLimitInBytes()},
	} {
		if v.n < 0 {
			return nil, nil, invalidArg(field+"."+v.name, "%d is negative", v.n)
		}
	}
	if adj := r.GetOomScoreAdj(); adj < oomScoreAdjMin || adj > oomScoreAdjMax {
		return nil, nil, invalidArg(field+".oom_score_adj", "%d out of range [%d, %d]", adj, oomScoreAdjMin, oomScoreAdjMax)
	}
	res := &cgroups.Resources{
		CPUShares:       uint64(r.GetCpuShares()),
		CPUQuota:        r.GetCpuQuota(),
		CPUPeriod:       uint64(r.GetCpuPeriod()),
		MemoryLimit:     r.GetMemoryLimitInBytes(),
		CpusetCPUs:      r.GetCpusetCpus(),
		CpusetMems:      r.GetCpusetMems(),
		MemorySwapLimit: r.GetMemorySwapLimitInBytes(),
		Unified:         maps.Clone(r.GetUnified()),
	}
	for i, h := range r.GetHugepageLimits() {
		if h.GetPageSize() == "" {
			return nil, nil, invalidArg(fmt.Sprintf("%s.hugepage_limits[%d].page_size", field, i), "must not be empty")
		}
		res.HugepageLimits = append(res.HugepageLimits, cgroups.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	// Mode-independent checks now, so the error names the field of this request.
	if err := res.ValidateStatic(); err != nil {
		var fe *cgroups.FieldError
		if errors.As(err, &fe) {
			return nil, nil, invalidArg(field+"."+fe.Field, "%s", fe.Msg)
		}
		return nil, nil, invalidArg(field, "%v", err)
	}
	adj := int(r.GetOomScoreAdj())
	return res, &adj, nil
}

// toLinuxResources reports a container's current resources in ContainerStatus.
func toLinuxResources(r *cgroups.Resources, oomScoreAdj *int) *runtimeapi.ContainerResources {
	if r == nil && oomScoreAdj == nil {
		return nil
	}
	lr := &runtimeapi.LinuxContainerResources{}
	if r != nil {
		lr.CpuPeriod = int64(r.CPUPeriod)
		lr.CpuQuota = r.CPUQuota
		lr.CpuShares = int64(r.CPUShares)
		lr.MemoryLimitInBytes = r.MemoryLimit
		lr.CpusetCpus = r.CpusetCPUs
		lr.CpusetMems = r.CpusetMems
		lr.MemorySwapLimitInBytes = r.MemorySwapLimit
		lr.Unified = maps.Clone(r.Unified)
		for _, h := range r.HugepageLimits {
			lr.HugepageLimits = append(lr.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
		}
	}
	if oomScoreAdj != nil {
		lr.OomScoreAdj = int64(*oomScoreAdj)
	}
	return &runtimeapi.ContainerResources{Linux: lr}
}
