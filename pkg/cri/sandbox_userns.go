package cri

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// usernsOptionsField is where a pod's user namespace sits in RunPodSandbox's request.
const usernsOptionsField = namespaceOptionsField + "userns_options"

// podUserns translates a pod's userns_options: unset and NODE are the node's user namespace
// (nil), POD one of the pod's own with the given mappings. CONTAINER and TARGET mean
// nothing for a pod (containerd refuses them too). The manager validates the mappings.
func podUserns(o *runtimeapi.UserNamespace) (*sandbox.UserNamespace, error) {
	if o == nil {
		return nil, nil
	}
	switch o.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, invalidArg(usernsOptionsField+".mode", "%s is not valid for a pod: NODE or POD", o.GetMode())
	}
	return userNamespaceMappings(usernsOptionsField, o)
}

// userNamespaceMappings translates the uids and gids of a userns_options at field.
func userNamespaceMappings(field string, o *runtimeapi.UserNamespace) (*sandbox.UserNamespace, error) {
	return translateMappings(field+".uids", o.GetUids(), field+".gids", o.GetGids())
}

func translateMappings(uidField string, uids []*runtimeapi.IDMapping, gidField string, gids []*runtimeapi.IDMapping) (*sandbox.UserNamespace, error) {
	u, err := idMappings(uidField, uids)
	if err != nil {
		return nil, err
	}
	g, err := idMappings(gidField, gids)
	if err != nil {
		return nil, err
	}
	return &sandbox.UserNamespace{UIDMappings: u, GIDMappings: g}, nil
}

func idMappings(field string, in []*runtimeapi.IDMapping) ([]sandbox.IDMapping, error) {
	out := make([]sandbox.IDMapping, 0, len(in))
	for i, m := range in {
		if m == nil {
			return nil, invalidArg(fmt.Sprintf("%s[%d]", field, i), "null entry")
		}
		out = append(out, sandbox.IDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Length: m.GetLength()})
	}
	return out, nil
}

// checkPodUserns validates a pod user namespace and then, last, refuses it when
// Options.PodUserNamespaces is off: on a node that cannot idmap the containers'
// filesystems, the pod's root would own none of its files.
func (s *Server) checkPodUserns(c *sandbox.Config) error {
	if c.UserNS == nil {
		return nil
	}
	if err := sandbox.CheckUserNamespace(c); err != nil {
		// The manager names fields relative to the PodSandboxConfig.
		return fmt.Errorf("config.%w", err)
	}
	if !s.opts.PodUserNamespaces {
		return invalidArg(usernsOptionsField+".mode", "POD is not supported on this node: its filesystem or kernel cannot idmap the containers' files (see the daemon's log)")
	}
	return nil
}

// usernsOptions reports a pod user namespace as it was asked for (containerd reports it in
// the status's namespace options too); nil for the node's.
func usernsOptions(u *sandbox.UserNamespace) *runtimeapi.UserNamespace {
	if u == nil {
		return nil
	}
	return &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD,
		Uids: criIDMappings(u.UIDMappings),
		Gids: criIDMappings(u.GIDMappings),
	}
}

func criIDMappings(m []sandbox.IDMapping) []*runtimeapi.IDMapping {
	out := make([]*runtimeapi.IDMapping, 0, len(m))
	for _, x := range m {
		out = append(out, &runtimeapi.IDMapping{ContainerId: x.ContainerID, HostId: x.HostID, Length: x.Length})
	}
	return out
}
