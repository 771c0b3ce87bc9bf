package cri

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// namespaceOptionsField is where a pod's and a container's NamespaceOption sit in their
// requests' configs, for error messages.
const namespaceOptionsField = "config.linux.security_context.namespace_options."

// containerNamespaces translates the container's NamespaceOption. Unset is POD throughout,
// the CRI's zero value. The container manager decides what each mode means in its pod.
func containerNamespaces(o *runtimeapi.NamespaceOption) (container.NamespaceOptions, error) {
	const field = namespaceOptionsField
	for _, m := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"network", o.GetNetwork()}, {"ipc", o.GetIpc()}, {"pid", o.GetPid()}} {
		if _, ok := runtimeapi.NamespaceMode_name[int32(m.mode)]; !ok {
			return container.NamespaceOptions{}, invalidArg(field+m.name, "unknown mode %d", m.mode)
		}
	}
	user, err := containerUserns(o.GetUsernsOptions())
	if err != nil {
		return container.NamespaceOptions{}, err
	}
	n := container.NamespaceOptions{
		Network: sandbox.NamespaceMode(o.GetNetwork()),
		IPC:     sandbox.NamespaceMode(o.GetIpc()),
		PID:     sandbox.NamespaceMode(o.GetPid()),
		User:    user,
	}
	if n.PID == sandbox.ModeTarget {
		if o.GetTargetId() == "" {
			return n, invalidArg(field+"target_id", "must not be empty with pid mode TARGET")
		}
		n.TargetID = o.GetTargetId()
	}
	return n, nil
}

// containerUserns translates a container's userns_options: unset follows the pod, NODE is
// the host's user namespace, POD the pod's (with the mappings kubelet repeats from the
// pod's config). The container manager checks them against the pod.
func containerUserns(u *runtimeapi.UserNamespace) (*container.UserNamespaceOption, error) {
	if u == nil {
		return nil, nil
	}
	const field = namespaceOptionsField + "userns_options"
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		return &container.UserNamespaceOption{Mode: sandbox.ModeNode}, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, invalidArg(field+".mode", "%s is not supported: NODE or POD", u.GetMode())
	}
	m, err := userNamespaceMappings(field, u)
	if err != nil {
		return nil, err
	}
	return &container.UserNamespaceOption{Mode: sandbox.ModePod, Mappings: m}, nil
}

// idmappedMounts marks the mounts that kubelet gives uid and gid mappings (every mount of a
// pod with a user namespace) as idmapped. Their mappings must be the container's user
// namespace's: an idmapped mount can only use a user namespace that exists, the pod's.
func idmappedMounts(in []*runtimeapi.Mount, user *container.UserNamespaceOption, out []runtime.Mount) error {
	for i, m := range in {
		if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
			continue
		}
		field := fmt.Sprintf("config.mounts[%d]", i)
		if user == nil || user.Mode != sandbox.ModePod || user.Mappings == nil {
			return invalidArg(field+".uid_mappings", "idmapped mounts need the container in its pod's user namespace (userns_options mode POD)")
		}
		ids, err := mountMappings(field, m)
		if err != nil {
			return err
		}
		if !ids.Equal(user.Mappings) {
			return invalidArg(field+".uid_mappings", "the mappings must be those of the container's user namespace")
		}
		out[i].IDMapped = true
	}
	return nil
}

// mountMappings translates a mount's uid_mappings and gid_mappings.
func mountMappings(field string, m *runtimeapi.Mount) (*sandbox.UserNamespace, error) {
	return translateMappings(field+".uid_mappings", m.GetUidMappings(), field+".gid_mappings", m.GetGidMappings())
}
