package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// runtimeType names the built-in runtime in the verbose info, where containerd reports its
// shim type.
const runtimeType = "io.cri-mini.native"

// PodSandboxStatus answers from the manager's memory only: a hung plugin or disk must never
// make kubelet's status poll hang (DESIGN.md section 7).
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	id := req.GetPodSandboxId()
	if id == "" {
		return nil, invalidArg("pod_sandbox_id", "must not be empty")
	}
	sb, err := m.Get(id)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox status: %w", err)
	}
	sb, initPid := s.withInit(sb)
	resp := &runtimeapi.PodSandboxStatusResponse{
		Status:             podSandboxStatus(sb),
		ContainersStatuses: s.podContainerStatuses(sb.ID),
		Timestamp:          time.Now().UnixNano(),
	}
	if req.GetVerbose() {
		info, err := sandboxInfo(sb, initPid)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": info}
	}
	return resp, nil
}

func podSandboxStatus(sb *sandbox.Sandbox) *runtimeapi.PodSandboxStatus {
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       podSandboxMetadata(&sb.Config),
		State:          podSandboxState(sb.State),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		Linux:          &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: namespaceOptions(&sb.Config)}},
		Labels:         maps.Clone(sb.Config.Labels),
		Annotations:    maps.Clone(sb.Config.Annotations),
		RuntimeHandler: sb.Config.RuntimeHandler,
	}
	// The addresses stay reported after Stop, as containerd does: kubelet reads the IP of a
	// NOTREADY sandbox to tell whether its network was ever set up. IPs come IPv4 first.
	if len(sb.IPs) > 0 {
		st.Network.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

// sandboxVerboseInfo is the verbose status in containerd's shape (crictl inspectp and tools written
// for containerd read "info"). There is no sandbox image and, unless the pod shares one PID
// namespace, no pause process (pid 0): the namespaces are bind-mount pins whose paths are
// reported instead.
type sandboxVerboseInfo struct {
	Pid            uint32                       `json:"pid"`
	ProcessStatus  string                       `json:"processStatus"`
	NetNSClosed    bool                         `json:"netNamespaceClosed"`
	Image          string                       `json:"image"`
	RuntimeHandler string                       `json:"runtimeHandler"`
	RuntimeType    string                       `json:"runtimeType"`
	Config         *runtimeapi.PodSandboxConfig `json:"config"`
	RuntimeSpec    sandboxSpec                  `json:"runtimeSpec"`
	NetNSPath      string                       `json:"netnsPath,omitempty"`
	Network        string                       `json:"cniNetwork,omitempty"`
	IPs            []string                     `json:"ips,omitempty"`
}

// sandboxSpec uses the OCI runtime spec's field names for what a sandbox has of one.
type sandboxSpec struct {
	Hostname string           `json:"hostname"`
	Mounts   []specMount      `json:"mounts"`
	Linux    sandboxSpecLinux `json:"linux"`
}

type specMount struct {
	Destination string `json:"destination"`
	Source      string `json:"source"`
	Type        string `json:"type"`
}

type sandboxSpecLinux struct {
	CgroupsPath string             `json:"cgroupsPath"`
	Sysctl      map[string]string  `json:"sysctl,omitempty"`
	Namespaces  []specNamespace    `json:"namespaces"`
	Resources   *sandbox.Resources `json:"resources,omitempty"`
	UIDMappings []specIDMapping    `json:"uidMappings,omitempty"`
	GIDMappings []specIDMapping    `json:"gidMappings,omitempty"`
}

type specIDMapping struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Size        uint32 `json:"size"`
}

func specIDMappings(m []sandbox.IDMapping) []specIDMapping {
	var out []specIDMapping
	for _, x := range m {
		out = append(out, specIDMapping{ContainerID: x.ContainerID, HostID: x.HostID, Size: x.Length})
	}
	return out
}

type specNamespace struct {
	Type string `json:"type"`
	Path string `json:"path,omitempty"`
}

func sandboxInfo(sb *sandbox.Sandbox, initPid int) (string, error) {
	info := sandboxVerboseInfo{
		Pid:            uint32(initPid),
		ProcessStatus:  "stopped",
		NetNSClosed:    sb.State != sandbox.StateReady || sb.NetNSPath == "",
		RuntimeHandler: sb.Config.RuntimeHandler,
		RuntimeType:    runtimeType,
		Config:         criConfig(sb),
		NetNSPath:      sb.NetNSPath,
		Network:        sb.Network,
		IPs:            sb.IPs,
		RuntimeSpec: sandboxSpec{
			Hostname: sb.Hostname,
			Linux: sandboxSpecLinux{
				CgroupsPath: sb.CgroupParent,
				Sysctl:      sb.Config.Sysctls,
				Resources:   sb.Config.Resources,
				UIDMappings: specIDMappings(sb.UIDMappings()),
				GIDMappings: specIDMappings(sb.GIDMappings()),
			},
		},
	}
	if sb.State == sandbox.StateReady {
		info.ProcessStatus = "running"
	}
	for _, n := range []struct{ kind, path string }{
		{"user", sb.UsernsPath}, {"network", sb.NetNSPath}, {"ipc", sb.IPCNSPath}, {"uts", sb.UTSNSPath},
	} {
		if n.path != "" {
			info.RuntimeSpec.Linux.Namespaces = append(info.RuntimeSpec.Linux.Namespaces, specNamespace{Type: n.kind, Path: n.path})
		}
	}
	if sb.Config.PIDMode == sandbox.ModePod {
		// The pod's PID namespace is its init's.
		n := specNamespace{Type: "pid"}
		if initPid > 0 {
			n.Path = fmt.Sprintf("/proc/%d/ns/pid", initPid)
		}
		info.RuntimeSpec.Linux.Namespaces = append(info.RuntimeSpec.Linux.Namespaces, n)
	}
	for _, mnt := range []struct{ dst, src, typ string }{
		{"/etc/resolv.conf", sb.ResolvConfPath, "bind"},
		{"/etc/hosts", sb.HostsPath, "bind"},
		{"/etc/hostname", sb.HostnamePath, "bind"},
		{"/dev/shm", sb.ShmPath, "bind"},
	} {
		if mnt.src != "" {
			info.RuntimeSpec.Mounts = append(info.RuntimeSpec.Mounts, specMount{Destination: mnt.dst, Source: mnt.src, Type: mnt.typ})
		}
	}
	b, err := json.Marshal(info)
	if err != nil {
		return "", fmt.Errorf("encode verbose status of pod sandbox %s: %w", sb.ID, err)
	}
	return string(b), nil
}
