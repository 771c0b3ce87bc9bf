package cri

import (
	"fmt"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// securityContext copies the capability, privilege and path parts of a container's
// security context into c (users and groups are translated by containerConfig).
// Capability names are checked here, where the field can be named.
func securityContext(sc *runtimeapi.LinuxContainerSecurityContext, c *container.Config) error {
	if sc == nil {
		return nil
	}
	const field = "config.linux.security_context."
	var err error
	caps := sc.GetCapabilities()
	if c.CapAdd, err = capabilityNames(field+"capabilities.add_capabilities", caps.GetAddCapabilities(), true); err != nil {
		return err
	}
	if c.CapDrop, err = capabilityNames(field+"capabilities.drop_capabilities", caps.GetDropCapabilities(), true); err != nil {
		return err
	}
	if c.AmbientCaps, err = capabilityNames(field+"capabilities.add_ambient_capabilities", caps.GetAddAmbientCapabilities(), false); err != nil {
		return err
	}
	c.Privileged = sc.GetPrivileged()
	c.NoNewPrivs = sc.GetNoNewPrivs()
	c.ReadonlyRootfs = sc.GetReadonlyRootfs()
	c.MaskedPaths = slices.Clone(sc.GetMaskedPaths())
	c.ReadonlyPaths = slices.Clone(sc.GetReadonlyPaths())
	switch p := sc.GetSupplementalGroupsPolicy(); p {
	case runtimeapi.SupplementalGroupsPolicy_Merge:
	case runtimeapi.SupplementalGroupsPolicy_Strict:
		c.SupplementalGroupsStrict = true
	default:
		return invalidArg(field+"supplemental_groups_policy", "unknown policy %d", p)
	}
	return nil
}

// capabilityNames canonicalises a list of capability names ("ALL" only where allowAll).
func capabilityNames(field string, names []string, allowAll bool) ([]string, error) {
	var out []string
	for i, n := range names {
		cn, err := runtime.CanonicalCapability(n)
		if err != nil {
			return nil, invalidArg(fmt.Sprintf("%s[%d]", field, i), "%v", err)
		}
		if cn == "ALL" && !allowAll {
			return nil, invalidArg(fmt.Sprintf("%s[%d]", field, i), "ALL is not allowed here")
		}
		out = append(out, cn)
	}
	return out, nil
}

// containerUser is the identity the container's process runs with, for ContainerStatus:
// the resolved uid and gid, and its groups as id -G shows them (the primary group first).
func containerUser(c *container.Container) *runtimeapi.ContainerUser {
	if c.Spec == nil || c.Spec.Process == nil {
		return nil
	}
	u := c.Spec.Process.User
	groups := []int64{int64(u.GID)}
	for _, g := range u.AdditionalGids {
		if !slices.Contains(groups, int64(g)) {
			groups = append(groups, int64(g))
		}
	}
	return &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
		Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups,
	}}
}

// checkRecursiveReadOnly refuses recursive read-only mounts that are not read-only or not
// private, as containerd does (a mount propagated in later would be writable).
func checkRecursiveReadOnly(mounts []*runtimeapi.Mount) error {
	for i, m := range mounts {
		if !m.GetRecursiveReadOnly() {
			continue
		}
		field := fmt.Sprintf("config.mounts[%d].recursive_read_only", i)
		if !m.GetReadonly() {
			return invalidArg(field, "needs readonly")
		}
		if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
			return invalidArg(field, "needs private propagation, not %s", m.GetPropagation())
		}
	}
	return nil
}
