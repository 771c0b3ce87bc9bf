package container

import (
	"fmt"
	"strconv"

	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// NamespaceOptions are the namespace modes a container asks for (the CRI's NamespaceOption
// of its security context). The zero value is the pod's namespaces throughout.
type NamespaceOptions struct {
	Network sandbox.NamespaceMode `json:"network,omitempty"`
	IPC     sandbox.NamespaceMode `json:"ipc,omitempty"`
	PID     sandbox.NamespaceMode `json:"pid,omitempty"`
	// TargetID is the container whose PID namespace a PID mode of TARGET joins.
	TargetID string `json:"targetID,omitempty"`
	// User is the user namespace asked for; nil follows the pod.
	User *UserNamespaceOption `json:"user,omitempty"`
}

// UserNamespaceOption is a container's userns_options: NODE (the host's user namespace)
// or POD with the mappings, which must be the pod's (kubelet repeats them).
type UserNamespaceOption struct {
	Mode     sandbox.NamespaceMode  `json:"mode"`
	Mappings *sandbox.UserNamespace `json:"mappings,omitempty"`
}

// PodInits tells where the shared PID namespace of a pod is; *sandbox.PodInits is one.
type PodInits interface {
	PIDNamespace(podID string) (string, error)
}

// Field names of the CRI request, for errors.
const (
	fieldNetNS  = "config.linux.security_context.namespace_options.network"
	fieldIPCNS  = "config.linux.security_context.namespace_options.ipc"
	fieldPIDNS  = "config.linux.security_context.namespace_options.pid"
	fieldTarget = "config.linux.security_context.namespace_options.target_id"
	fieldUserNS = "config.linux.security_context.namespace_options.userns_options"
)

// namespacePaths decides which namespaces the container joins. NET and IPC follow
// containerd: POD is the sandbox's (which is the host's in a host-network or host-IPC pod),
// NODE is the host's even in a pod that has its own. PID: CONTAINER is a new namespace, NODE
// the host's, POD follows the pod (its init's namespace, the host's in a host-PID pod, a new
// one when the pod's containers each have their own), TARGET that of another running
// container of the pod.
func (m *Manager) namespacePaths(sb *sandbox.Sandbox, o NamespaceOptions) (runtime.SandboxPaths, error) {
	p := runtime.SandboxPaths{
		NetNS: sb.NetNSPath, IPCNS: sb.IPCNSPath, UTSNS: sb.UTSNSPath,
		ResolvConf: sb.ResolvConfPath, Hosts: sb.HostsPath, HostnameFile: sb.HostnamePath,
		Shm: sb.ShmPath,
	}
	switch o.Network {
	case sandbox.ModePod:
	case sandbox.ModeNode:
		// A host-network container has the node's name too, as in a host-network pod.
		p.NetNS, p.UTSNS = "", ""
	default:
		return p, fmt.Errorf("%s: %s is not supported: %w", fieldNetNS, o.Network, store.ErrInvalidArgument)
	}
	switch o.IPC {
	case sandbox.ModePod:
	case sandbox.ModeNode:
		p.IPCNS, p.Shm = "", ""
	default:
		return p, fmt.Errorf("%s: %s is not supported: %w", fieldIPCNS, o.IPC, store.ErrInvalidArgument)
	}
	if err := userNamespace(sb, o, &p); err != nil {
		return p, err
	}
	var err error
	switch o.PID {
	case sandbox.ModeContainer:
	case sandbox.ModeNode:
		p.HostPID = true
	case sandbox.ModePod:
		err = m.podPID(sb, &p)
	case sandbox.ModeTarget:
		p.PIDNS, err = m.targetPID(sb, o.TargetID)
	default:
		err = fmt.Errorf("%s: unknown mode %d: %w", fieldPIDNS, o.PID, store.ErrInvalidArgument)
	}
	return p, err
}

func (m *Manager) podPID(sb *sandbox.Sandbox, p *runtime.SandboxPaths) error {
	switch sb.Config.PIDMode {
	case sandbox.ModeNode:
		p.HostPID = true
		return nil
	case sandbox.ModePod:
		if m.o.PodInits == nil {
			// No pod inits wired (tests of this package): each container keeps its own.
			return nil
		}
		path, err := m.o.PodInits.PIDNamespace(sb.ID)
		if err != nil {
			return fmt.Errorf("%s: POD: %w", fieldPIDNS, err)
		}
		p.PIDNS = path
		return nil
	}
	// A pod without a shared PID namespace (CONTAINER): POD follows the pod, so the
	// container gets one of its own, as each container of such a pod does.
	return nil
}

// targetPID is the PID namespace of the running container target of the same pod (what
// ephemeral debug containers use).
func (m *Manager) targetPID(sb *sandbox.Sandbox, target string) (string, error) {
	if target == "" {
		return "", fmt.Errorf("%s: empty with PID mode TARGET: %w", fieldTarget, store.ErrInvalidArgument)
	}
	t, err := m.Get(target)
	if err != nil {
		return "", fmt.Errorf("%s: container %s: %w", fieldTarget, target, err)
	}
	if t.PodSandboxID != sb.ID {
		return "", fmt.Errorf("%s: container %s is in pod sandbox %s, not %s: %w",
			fieldTarget, t.ID, t.PodSandboxID, sb.ID, store.ErrInvalidArgument)
	}
	if t.State != StateRunning || t.Pid <= 0 {
		return "", fmt.Errorf("%s: container %s is %s, not running: %w", fieldTarget, t.ID, t.State, store.ErrFailedPrecondition)
	}
	return "/proc/" + strconv.Itoa(t.Pid) + "/ns/pid", nil
}

// userNamespace puts the container in its pod's user namespace, if the pod has one. What
// the container asks must agree: the same mappings, and none of the host's namespaces,
// which belong to the host's user namespace where the pod's root is nobody (Kubernetes
// refuses hostUsers: false with any of them).
func userNamespace(sb *sandbox.Sandbox, o NamespaceOptions, p *runtime.SandboxPaths) error {
	asked := o.User
	if sb.Config.UserNS == nil {
		if asked != nil && asked.Mode != sandbox.ModeNode {
			return fmt.Errorf("%s.mode: %s, but pod sandbox %s has no user namespace: %w", fieldUserNS, asked.Mode, sb.ID, store.ErrInvalidArgument)
		}
		return nil
	}
	if asked != nil {
		if asked.Mode != sandbox.ModePod {
			return fmt.Errorf("%s.mode: %s, but pod sandbox %s has a user namespace of its own: POD: %w", fieldUserNS, asked.Mode, sb.ID, store.ErrInvalidArgument)
		}
		if !asked.Mappings.Equal(sb.Config.UserNS) {
			return fmt.Errorf("%s: the mappings differ from pod sandbox %s's: %w", fieldUserNS, sb.ID, store.ErrInvalidArgument)
		}
	}
	for _, n := range []struct {
		field string
		mode  sandbox.NamespaceMode
	}{{fieldNetNS, o.Network}, {fieldIPCNS, o.IPC}, {fieldPIDNS, o.PID}} {
		if n.mode == sandbox.ModeNode {
			return fmt.Errorf("%s: NODE is not possible in a pod with a user namespace: %w", n.field, store.ErrInvalidArgument)
		}
	}
	p.UserNS = sb.UsernsPath
	p.UIDMappings = runtimeIDMappings(sb.UIDMappings())
	p.GIDMappings = runtimeIDMappings(sb.GIDMappings())
	return nil
}

func runtimeIDMappings(in []sandbox.IDMapping) []runtime.IDMapping {
	out := make([]runtime.IDMapping, 0, len(in))
	for _, m := range in {
		out = append(out, runtime.IDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Length})
	}
	return out
}
