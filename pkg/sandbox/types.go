// Package sandbox manages pod sandboxes: the pod's pinned NET/IPC/UTS namespaces (no pause
// process), its hostname and sysctls, the /etc/hosts, /etc/resolv.conf and /etc/hostname
// files its containers mount, its /dev/shm, its cgroup and its CNI network. Records live in
// the metadata store; Get and List answer from memory only.
package sandbox

import (
	"maps"
	"slices"
	"time"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/ns"
)

// NamespaceMode says whose namespace a pod uses (values follow the CRI's NamespaceMode).
type NamespaceMode int

// Namespace modes.
const (
	ModePod       NamespaceMode = 0 // a namespace of the pod's own
	ModeContainer NamespaceMode = 1 // one per container (PID only)
	ModeNode      NamespaceMode = 2 // the host's
	ModeTarget    NamespaceMode = 3 // another container's (containers only)
)

func (m NamespaceMode) String() string {
	switch m {
	case ModePod:
		return "POD"
	case ModeContainer:
		return "CONTAINER"
	case ModeNode:
		return "NODE"
	case ModeTarget:
		return "TARGET"
	}
	return "UNKNOWN"
}

// State of a sandbox.
type State string

// States. Creating is only ever seen in the store: a record left in it means the daemon
// died during Run, and start-up cleans it up.
const (
	StateCreating State = "CREATING"
	StateReady    State = "READY"
	StateNotReady State = "NOTREADY"
)

// DNSConfig is the pod's resolver configuration.
type DNSConfig struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// PortMapping is one port of the pod; those with a HostPort are handed to CNI.
type PortMapping struct {
	Protocol      string `json:"protocol"` // TCP, UDP, SCTP
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// IDMapping maps Length IDs from ContainerID on, inside the pod's user namespace, to the
// IDs from HostID on outside it (one line of uid_map or gid_map).
type IDMapping struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Length      uint32 `json:"length"`
}

// UserNamespace asks for a user namespace of the pod's own (Kubernetes hostUsers: false):
// the pod's NET, IPC and UTS namespaces are then owned by it.
type UserNamespace struct {
	UIDMappings []IDMapping `json:"uidMappings"`
	GIDMappings []IDMapping `json:"gidMappings"`
}

// Equal tells whether u and o map the same IDs (both non-nil).
func (u *UserNamespace) Equal(o *UserNamespace) bool {
	return u != nil && o != nil && slices.Equal(u.UIDMappings, o.UIDMappings) && slices.Equal(u.GIDMappings, o.GIDMappings)
}

func (u *UserNamespace) clone() *UserNamespace {
	if u == nil {
		return nil
	}
	return &UserNamespace{UIDMappings: slices.Clone(u.UIDMappings), GIDMappings: slices.Clone(u.GIDMappings)}
}

// Resources are pod-level limits applied to the pod cgroup.
type Resources = cgroups.Resources

// Config is what a caller asks for.
type Config struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Attempt   uint32 `json:"attempt"`

	Hostname     string            `json:"hostname,omitempty"`
	LogDir       string            `json:"logDir,omitempty"`
	DNS          *DNSConfig        `json:"dns,omitempty"`
	PortMappings []PortMapping     `json:"portMappings,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	CgroupParent string            `json:"cgroupParent,omitempty"`
	Sysctls      map[string]string `json:"sysctls,omitempty"`

	NetworkMode NamespaceMode `json:"networkMode"`
	IPCMode     NamespaceMode `json:"ipcMode"`
	PIDMode     NamespaceMode `json:"pidMode"`

	RuntimeHandler string     `json:"runtimeHandler,omitempty"`
	Resources      *Resources `json:"resources,omitempty"`

	// Privileged pods may run privileged containers.
	Privileged bool `json:"privileged,omitempty"`

	// UserNS, when set, gives the pod a user namespace of its own; nil uses the node's.
	UserNS *UserNamespace `json:"userNamespace,omitempty"`
}

// Sandbox is a pod sandbox as reported to callers. Values returned by the Manager are
// copies: changing them changes nothing.
type Sandbox struct {
	ID        string    `json:"id"`
	Config    Config    `json:"config"`
	State     State     `json:"state"`
	CreatedAt time.Time `json:"createdAt"`
	// Network is the CNI network the pod was attached to ("" with the host network).
	Network string   `json:"network,omitempty"`
	IPs     []string `json:"ips,omitempty"`
	// Hostname is the effective hostname (the node's with the host network).
	Hostname string `json:"hostname"`

	// Namespace pins; empty for a namespace shared with the host.
	NetNSPath string `json:"netnsPath,omitempty"`
	IPCNSPath string `json:"ipcnsPath,omitempty"`
	UTSNSPath string `json:"utsnsPath,omitempty"`
	// UsernsPath pins the pod's user namespace (Config.UserNS), which owns the three above.
	UsernsPath string `json:"usernsPath,omitempty"`

	// Files for containers to bind-mount. ShmPath is "" with host IPC (containers then
	// mount the host's /dev/shm).
	ResolvConfPath string `json:"resolvConfPath"`
	HostsPath      string `json:"hostsPath"`
	HostnamePath   string `json:"hostnamePath"`
	ShmPath        string `json:"shmPath,omitempty"`

	// CgroupParent is the pod cgroup (cgroupfs path) containers are created under.
	CgroupParent string `json:"cgroupParent"`
}

func (s *Sandbox) clone() *Sandbox {
	c := *s
	c.IPs = slices.Clone(s.IPs)
	c.Config.Labels = maps.Clone(s.Config.Labels)
	c.Config.Annotations = maps.Clone(s.Config.Annotations)
	c.Config.Sysctls = maps.Clone(s.Config.Sysctls)
	c.Config.PortMappings = slices.Clone(s.Config.PortMappings)
	if s.Config.DNS != nil {
		d := *s.Config.DNS
		d.Servers, d.Searches, d.Options = slices.Clone(d.Servers), slices.Clone(d.Searches), slices.Clone(d.Options)
		c.Config.DNS = &d
	}
	if s.Config.Resources != nil {
		r := *s.Config.Resources
		c.Config.Resources = &r
	}
	c.Config.UserNS = s.Config.UserNS.clone()
	return &c
}

// UIDMappings returns the uid mappings of the pod's user namespace, nil without one.
func (s *Sandbox) UIDMappings() []IDMapping {
	if s.Config.UserNS == nil {
		return nil
	}
	return slices.Clone(s.Config.UserNS.UIDMappings)
}

// GIDMappings returns the gid mappings of the pod's user namespace, nil without one.
func (s *Sandbox) GIDMappings() []IDMapping {
	if s.Config.UserNS == nil {
		return nil
	}
	return slices.Clone(s.Config.UserNS.GIDMappings)
}

// RootHostIDs returns the host uid and gid of the pod's root (the mappings of ID 0): who
// owns what the pod's containers create as root, e.g. their idmapped rootfs. ok is false
// without a pod user namespace.
func (s *Sandbox) RootHostIDs() (uid, gid uint32, ok bool) {
	if s.Config.UserNS == nil {
		return 0, 0, false
	}
	uid, uok := HostID(s.Config.UserNS.UIDMappings, 0)
	gid, gok := HostID(s.Config.UserNS.GIDMappings, 0)
	return uid, gid, uok && gok
}

// HostID returns the host ID of id inside a user namespace with mappings m, and false when
// m does not map it.
func HostID(m []IDMapping, id uint32) (uint32, bool) {
	return ns.HostID(nsIDMaps(m), id)
}

func nsIDMaps(m []IDMapping) []ns.IDMap {
	out := make([]ns.IDMap, 0, len(m))
	for _, x := range m {
		out = append(out, ns.IDMap{ContainerID: x.ContainerID, HostID: x.HostID, Size: x.Length})
	}
	return out
}

// record is what the store holds: the public view plus what cleanup needs to know.
type record struct {
	Sandbox
	// StateDir and RootDir are the sandbox's own directories (volatile and persistent).
	StateDir string `json:"stateDir"`
	RootDir  string `json:"rootDir"`
	// NetworkAttached is true from just before CNI ADD until a DEL succeeded: while it is
	// set, Stop and Remove must (re)try DEL.
	NetworkAttached bool `json:"networkAttached,omitempty"`
	// CgroupCreated is true when Run created the pod cgroup (and Remove may delete it).
	CgroupCreated bool `json:"cgroupCreated,omitempty"`
}

// pinPaths lists the namespace pins of r ("" for one it does not have), the user namespace
// last: it owns the others.
func (r *record) pinPaths() []string {
	return []string{r.NetNSPath, r.IPCNSPath, r.UTSNSPath, r.UsernsPath}
}
