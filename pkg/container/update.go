package container

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
)

// UpdateResources changes the limits of a container (kubelet's in-place resize). Fields
// left zero keep their current value, as containerd does: kubelet sends what it manages.
// A created or running container's cgroup is changed first; the record (its config and its
// spec) only when that worked. An exited container has no cgroup left to change: the record
// is updated and the call succeeds, as with containerd. oom_score_adj and device rules are
// not changed (the kernel ties the first to the running process, the second is fixed at
// create).
func (m *Manager) UpdateResources(ctx context.Context, idOrPrefix string, r *cgroups.Resources) error {
	if r == nil {
		r = &cgroups.Resources{}
	}
	if err := m.validateResources(r); err != nil {
		return err
	}
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	// ex: the exit watcher must not record an exit between our read and our write.
	e.ex.Lock()
	defer e.ex.Unlock()
	c := e.get()
	merged := mergeResources(c.Config.Resources, r)
	if err := m.validateResources(merged); err != nil {
		return err
	}
	if c.CgroupPath != "" && (c.State == StateCreated || c.State == StateRunning) {
		if err := m.o.Cgroups.Update(c.CgroupPath, merged); err != nil {
			return fmt.Errorf("update resources of container %s: %w", c.ID, err)
		}
	}
	c.Config.Resources = merged
	if c.Spec != nil {
		spec, err := cloneSpec(c.Spec)
		if err != nil {
			return fmt.Errorf("update resources of container %s: %w", c.ID, err)
		}
		// The oom_score_adj in the spec stays the one applied at create.
		cfg := c.Config
		cfg.OOMScoreAdj = nil
		applyResourcesToSpec(spec, cfg, 0)
		c.Spec = spec
	}
	if err := m.put(&c); err != nil {
		return err
	}
	e.set(c)
	klog.FromContext(ctx).V(2).Info("Container resources updated", "containerID", c.ID)
	return nil
}

// mergeResources returns cur with every field r sets replaced. Unified keys merge.
func mergeResources(cur, r *cgroups.Resources) *cgroups.Resources {
	var out cgroups.Resources
	if cur != nil {
		out = *cur
		out.Unified = maps.Clone(cur.Unified)
	}
	out.Devices = nil // device rules are never changed by an update
	if r.CPUShares != 0 {
		out.CPUShares = r.CPUShares
	}
	if r.CPUQuota != 0 {
		out.CPUQuota = r.CPUQuota
	}
	if r.CPUPeriod != 0 {
		out.CPUPeriod = r.CPUPeriod
	}
	if r.MemoryLimit != 0 {
		out.MemoryLimit = r.MemoryLimit
	}
	if r.MemorySwapLimit != 0 {
		out.MemorySwapLimit = r.MemorySwapLimit
	}
	if r.CpusetCPUs != "" {
		out.CpusetCPUs = r.CpusetCPUs
	}
	if r.CpusetMems != "" {
		out.CpusetMems = r.CpusetMems
	}
	if r.PidsLimit != 0 {
		out.PidsLimit = r.PidsLimit
	}
	if len(r.HugepageLimits) > 0 {
		out.HugepageLimits = append([]cgroups.HugepageLimit(nil), r.HugepageLimits...)
	}
	for k, v := range r.Unified {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		out.Unified[k] = v
	}
	return &out
}

// cloneSpec deep-copies a spec: records hand out copies that share the spec pointer, so a
// change must go to a new one.
func cloneSpec(s *specs.Spec) (*specs.Spec, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("copy spec: %w", err)
	}
	var out specs.Spec
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("copy spec: %w", err)
	}
	return &out, nil
}
