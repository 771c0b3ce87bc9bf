package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
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
	if err := checkUserns(o); err != nil {
		return container.NamespaceOptions{}, err
	}
	n := container.NamespaceOptions{
		Network: sandbox.NamespaceMode(o.GetNetwork()),
		IPC:     sandbox.NamespaceMode(o.GetIpc()),
		PID:     sandbox.NamespaceMode(o.GetPid()),
	}
	if n.PID == sandbox.ModeTarget {
		if o.GetTargetId() == "" {
			return n, invalidArg(field+"target_id", "must not be empty with pid mode TARGET")
		}
		n.TargetID = o.GetTargetId()
	}
	return n, nil
}

// checkUserns refuses a user namespace other than the node's. Pod user namespaces need the
// spawn path described in DESIGN.md 6b; until then asking for one must fail rather than
// silently run with host IDs. Status does not advertise the user_namespaces feature, so
// kubelet does not ask.
func checkUserns(o *runtimeapi.NamespaceOption) error {
	if u := o.GetUsernsOptions(); u != nil && u.GetMode() != runtimeapi.NamespaceMode_NODE {
		return invalidArg(namespaceOptionsField+"userns_options.mode",
			"%s is not supported: this runtime has no pod user namespaces yet", u.GetMode())
	}
	return nil
}
