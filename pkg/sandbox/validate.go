package sandbox

import (
	"fmt"
	"math"
	"net"
	"regexp"
	"strings"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/store"
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), store.ErrInvalidArgument)
}

// hostnameRE is an RFC 1123 hostname (labels of letters, digits and dashes).
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func checkName(field, v string) error {
	switch {
	case v == "":
		return invalid(field, "must not be empty")
	case len(v) > 253:
		return invalid(field, "longer than 253 characters")
	case strings.ContainsAny(v, "/\x00") || strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
		return invalid(field, "%q contains '/' or a control character", v)
	}
	return nil
}

// validate checks c before anything is created. Errors wrap store.ErrInvalidArgument and
// name the offending field.
func validate(c *Config) error {
	for _, f := range []struct{ name, v string }{
		{"metadata.name", c.Name}, {"metadata.namespace", c.Namespace}, {"metadata.uid", c.UID},
	} {
		if err := checkName(f.name, f.v); err != nil {
			return err
		}
	}
	if c.Hostname != "" && (len(c.Hostname) > 64 || !hostnameRE.MatchString(c.Hostname)) {
		return invalid("hostname", "%q is not a valid hostname of at most 64 characters", c.Hostname)
	}
	if c.NetworkMode != ModePod && c.NetworkMode != ModeNode {
		return invalid("linux.security_context.namespace_options.network", "mode %s is not valid for a pod", c.NetworkMode)
	}
	if c.IPCMode != ModePod && c.IPCMode != ModeNode {
		return invalid("linux.security_context.namespace_options.ipc", "mode %s is not valid for a pod", c.IPCMode)
	}
	if c.PIDMode == ModeTarget || c.PIDMode > ModeTarget || c.PIDMode < 0 {
		return invalid("linux.security_context.namespace_options.pid", "mode %s is not valid for a pod", c.PIDMode)
	}
	if err := CheckUserNamespace(c); err != nil {
		return err
	}
	if err := ns.CheckSysctls(c.Sysctls, podKinds(c)); err != nil {
		return invalid("linux.sysctls", "%v", err)
	}
	for i, pm := range c.PortMappings {
		field := fmt.Sprintf("port_mappings[%d]", i)
		switch strings.ToUpper(pm.Protocol) {
		case "", "TCP", "UDP", "SCTP":
		default:
			return invalid(field+".protocol", "%q is not TCP, UDP or SCTP", pm.Protocol)
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return invalid(field+".container_port", "%d out of range", pm.ContainerPort)
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			return invalid(field+".host_port", "%d out of range", pm.HostPort)
		}
		if pm.HostIP != "" && net.ParseIP(pm.HostIP) == nil {
			return invalid(field+".host_ip", "%q is not an IP address", pm.HostIP)
		}
	}
	if c.DNS != nil {
		for _, s := range c.DNS.Servers {
			if net.ParseIP(s) == nil {
				return invalid("dns_config.servers", "%q is not an IP address", s)
			}
		}
		for _, list := range [][]string{c.DNS.Searches, c.DNS.Options} {
			for _, s := range list {
				if s == "" || strings.ContainsAny(s, " \t\n\x00") {
					return invalid("dns_config", "%q is empty or contains whitespace", s)
				}
			}
		}
	}
	if c.CgroupParent != "" {
		if _, err := cgroups.CleanPath(c.CgroupParent); err != nil {
			return invalid("linux.cgroup_parent", "%v", err)
		}
	}
	if err := c.Resources.Validate(); err != nil {
		return invalid("linux.resources", "%v", err)
	}
	return nil
}

// podKinds lists the namespaces the pod gets of its own. With the host network the pod
// also uses the host's UTS namespace (as containerd and CRI-O do): its hostname is the
// node's.
func podKinds(c *Config) []ns.Kind {
	var kinds []ns.Kind
	if c.NetworkMode == ModePod {
		kinds = append(kinds, ns.Net, ns.UTS)
	}
	if c.IPCMode == ModePod {
		kinds = append(kinds, ns.IPC)
	}
	return kinds
}

// nameKey is the reservation key of a pod: kubelet retries RunPodSandbox with the same
// metadata, and a retry must find the first sandbox instead of making a second one.
func nameKey(c *Config) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d", c.Namespace, c.Name, c.UID, c.Attempt)
}

// usernsField is where a pod's user namespace sits in its config, for error messages.
const usernsField = "linux.security_context.namespace_options.userns_options"

// CheckUserNamespace validates c's pod user namespace, if any, and the namespace modes it
// needs. Errors wrap store.ErrInvalidArgument and name the field relative to the pod's
// config, like validate's.
func CheckUserNamespace(c *Config) error {
	u := c.UserNS
	if u == nil {
		return nil
	}
	if err := checkIDMappings(usernsField+".uids", u.UIDMappings); err != nil {
		return err
	}
	if err := checkIDMappings(usernsField+".gids", u.GIDMappings); err != nil {
		return err
	}
	// The pod's own NET and IPC namespaces are the ones the user namespace owns; the host's
	// belong to the host's user namespace, where the pod's root is nobody. Kubernetes
	// refuses hostUsers: false with hostNetwork or hostIPC for the same reason.
	if c.NetworkMode != ModePod {
		return invalid("linux.security_context.namespace_options.network", "mode %s is not possible with a pod user namespace", c.NetworkMode)
	}
	if c.IPCMode != ModePod {
		return invalid("linux.security_context.namespace_options.ipc", "mode %s is not possible with a pod user namespace", c.IPCMode)
	}
	if c.PIDMode == ModeNode {
		return invalid("linux.security_context.namespace_options.pid", "mode %s is not possible with a pod user namespace", c.PIDMode)
	}
	return nil
}

// checkIDMappings accepts exactly one mapping of container root to a non-root host range:
// kubelet sends one range of 65536 IDs at a multiple of 65536 per pod.
func checkIDMappings(field string, m []IDMapping) error {
	if len(m) != 1 {
		return invalid(field, "exactly one mapping is supported, got %d", len(m))
	}
	x := m[0]
	field += "[0]"
	switch {
	case x.ContainerID != 0:
		return invalid(field+".container_id", "%d: container ID 0 must be mapped (the pod's root)", x.ContainerID)
	case x.Length == 0:
		return invalid(field+".length", "must be greater than 0")
	case x.HostID == 0:
		return invalid(field+".host_id", "0 would map the host's root into the pod")
	case uint64(x.HostID)+uint64(x.Length) > math.MaxUint32:
		// The kernel refuses a range that wraps or includes ID 2^32-1 ((uid_t)-1, "no ID").
		return invalid(field, "host_id %d + length %d exceeds the 32-bit ID space", x.HostID, x.Length)
	}
	return nil
}
