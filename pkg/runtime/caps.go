package runtime

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCapabilities is the set a container gets when the request neither adds nor drops:
// the list Docker, containerd and CRI-O share.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// CapAll is the name that stands for every capability in add and drop lists.
const CapAll = "ALL"

// CanonicalCapability turns a capability name as the CRI gives it ("net_admin",
// "NET_ADMIN", "CAP_NET_ADMIN") into the OCI spelling ("CAP_NET_ADMIN"). "ALL" stays
// "ALL". An unknown name is an error.
func CanonicalCapability(name string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == CapAll {
		return CapAll, nil
	}
	n = strings.TrimPrefix(n, "CAP_")
	for _, c := range capability.ListKnown() {
		if strings.ToUpper(c.String()) == n {
			return "CAP_" + n, nil
		}
	}
	return "", fmt.Errorf("unknown capability %q", name)
}

// ResolveCapabilities applies a request's add and drop lists to the default set, in
// containerd's order: "ALL" in add starts from every capability (all), "ALL" in drop from
// none, then the named additions, then the named drops (so add ALL + drop CHOWN is all but
// CHOWN, and drop ALL + add NET_ADMIN is NET_ADMIN alone). Names must be canonical (see
// CanonicalCapability). The result is sorted and has no duplicates.
func ResolveCapabilities(add, drop, all []string) []string {
	set := DefaultCapabilities()
	if slices.Contains(add, CapAll) {
		set = slices.Clone(all)
	}
	if slices.Contains(drop, CapAll) {
		set = nil
	}
	for _, c := range add {
		if c != CapAll {
			set = append(set, c)
		}
	}
	set = slices.DeleteFunc(set, func(c string) bool { return slices.Contains(drop, c) })
	slices.Sort(set)
	return slices.Compact(set)
}

// AvailableCapabilities lists the capabilities this process may give a child: those in its
// permitted set ("ALL" and privileged containers get these; asking for more would make
// capset fail, and root here may lack some, such as CAP_SYS_RESOURCE in a container).
func AvailableCapabilities() ([]string, error) {
	c, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	if err := c.Load(); err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	supported, err := capability.ListSupported()
	if err != nil {
		return nil, fmt.Errorf("list supported capabilities: %w", err)
	}
	var out []string
	for _, cp := range supported {
		if c.Get(capability.PERMITTED, cp) {
			out = append(out, "CAP_"+strings.ToUpper(cp.String()))
		}
	}
	return out, nil
}

// processCapabilities is the OCI capability sets of a process with capability set caps
// running as uid. Inheritable stays empty but for ambient capabilities
// (CVE-2022-24769: a non-empty inheritable set lets file capabilities raise privileges).
// A non-root user gets empty effective and permitted sets unless it asked for ambient
// capabilities, as Docker and containerd do: the bounding set still limits what a setuid
// or file-capability program may get.
func processCapabilities(caps, ambient []string, uid uint32) *specs.LinuxCapabilities {
	bounding := slices.Clone(caps)
	for _, a := range ambient {
		if !slices.Contains(bounding, a) {
			bounding = append(bounding, a)
		}
	}
	slices.Sort(bounding)
	pc := &specs.LinuxCapabilities{Bounding: bounding}
	if uid == 0 {
		pc.Effective = slices.Clone(bounding)
		pc.Permitted = slices.Clone(bounding)
	} else {
		pc.Effective = slices.Clone(ambient)
		pc.Permitted = slices.Clone(ambient)
	}
	pc.Inheritable = slices.Clone(ambient)
	pc.Ambient = slices.Clone(ambient)
	return pc
}

// capsFromNames maps OCI names to capability numbers, skipping names the kernel does not
// know (a spec written on a newer kernel must still start: runc ignores them too).
func capsFromNames(names []string) ([]capability.Cap, error) {
	known := map[string]capability.Cap{}
	supported, err := capability.ListSupported()
	if err != nil {
		return nil, fmt.Errorf("list supported capabilities: %w", err)
	}
	for _, c := range supported {
		known["CAP_"+strings.ToUpper(c.String())] = c
	}
	var out []capability.Cap
	for _, n := range names {
		if c, ok := known[n]; ok {
			out = append(out, c)
		}
	}
	return out, nil
}
