// Package runtime is cri-mini's built-in low-level container runtime. The parent side
// (BuildSpec, MountRootfs, Create, Start, Signal, Wait, Delete, Exec) runs in whatever
// process spawns containers (the per-pod monitor); the child side (InitMain, ExecHelperMain)
// is the same binary re-executed as "cri-mini init" and "cri-mini exec-helper".
//
// A container is described by exactly one OCI runtime spec, built by BuildSpec before
// anything is spawned, so that later adjustments (NRI) have a single object to edit.
package runtime

import (
	"fmt"
	"os"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/ns"
)

// DefaultPath is the PATH of a container whose image and request set none (the value
// Docker, containerd and CRI-O use).
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ImageConfig is the part of an image's config that shapes the container's process.
type ImageConfig struct {
	Env        []string // KEY=VALUE
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	User       string // as in the image; resolve with ResolveUser
}

// Propagation of a bind mount, as in the CRI.
type Propagation int

// Mount propagation modes.
const (
	PropagationPrivate         Propagation = iota // rprivate
	PropagationHostToContainer                    // rslave
	PropagationBidirectional                      // rshared
)

// Mount is a bind mount requested for the container.
type Mount struct {
	ContainerPath string
	HostPath      string
	Readonly      bool
	Propagation   Propagation
	// RecursiveReadOnly makes every submount read-only too (needs Readonly and private
	// propagation: a read-only flag cannot be forced on mounts that propagate in later).
	RecursiveReadOnly bool
	// IDMapped shows the source through the mappings of the container's user namespace
	// (an idmapped mount): files the host's root owns are the container root's. Only for a
	// container in a user namespace.
	IDMapped bool
}

// Device is a host device node to create in the container.
type Device struct {
	ContainerPath string
	HostPath      string
	Permissions   string // "rwm" subset; empty means rwm
}

// ContainerConfig is what the request asks for.
type ContainerConfig struct {
	Command    []string
	Args       []string
	Env        []string // KEY=VALUE
	WorkingDir string
	Mounts     []Mount
	Devices    []Device
	TTY        bool
}

// SandboxPaths are the pod's namespace pins and files. An empty namespace path means the
// host's namespace; an empty ShmPath means the host's /dev/shm (host IPC).
type SandboxPaths struct {
	NetNS, IPCNS, UTSNS string
	// PIDNS is set when the pod shares one PID namespace (or a container targets another's).
	PIDNS string
	// HostPID leaves the container in the host's PID namespace (PIDNS is then ignored).
	HostPID                         bool
	ResolvConf, Hosts, HostnameFile string
	Shm                             string
	// UserNS is the pod's user namespace ("" runs the container in the host's), and
	// UIDMappings and GIDMappings what it maps.
	UserNS                   string
	UIDMappings, GIDMappings []IDMapping
}

// IDMapping maps Size ids from ContainerID inside a user namespace to HostID outside.
type IDMapping = ns.IDMap

func specIDMappings(ms []IDMapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, 0, len(ms))
	for _, m := range ms {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size})
	}
	return out
}

// SpecOptions gathers everything BuildSpec needs.
type SpecOptions struct {
	Image       ImageConfig
	Container   ContainerConfig
	Sandbox     SandboxPaths
	Hostname    string
	Rootfs      string     // mounted rootfs directory (Rootfs.Path)
	CgroupsPath string     // cgroupfs path of the container's cgroup
	User        specs.User // resolved uid/gid/additional gids (see ResolveUser)
	// CgroupNS requests a new cgroup namespace (what runc and containerd do on cgroup v2).
	CgroupNS bool
	Security Security
}

// BuildSpec builds the container's OCI runtime spec with the CRI's rules for command,
// arguments and environment, the default mounts and the default masked and read-only paths.
func BuildSpec(o SpecOptions) (*specs.Spec, error) {
	args := processArgs(o.Image, o.Container)
	if len(args) == 0 {
		return nil, fmt.Errorf("build spec: no command: neither the request nor the image gives one")
	}
	if o.Rootfs == "" {
		return nil, fmt.Errorf("build spec: empty rootfs path")
	}
	cwd := o.Container.WorkingDir
	if cwd == "" {
		cwd = o.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if err := checkRecursiveReadonly(o.Container.Mounts); err != nil {
		return nil, fmt.Errorf("build spec: %w", err)
	}
	for _, m := range o.Container.Mounts {
		if m.IDMapped && o.Sandbox.UserNS == "" {
			return nil, fmt.Errorf("build spec: mount %s: idmapped, but the container has no user namespace", m.ContainerPath)
		}
	}
	devices, rules, err := linuxDevices(o.Container.Devices)
	if err != nil {
		return nil, err
	}
	mounts := o.Container.Mounts
	if o.Sandbox.UserNS != "" {
		// mknod(2) is refused inside a user namespace: the nodes are bound from the host,
		// and the cgroup rules still say what may be opened.
		mounts = append(append([]Mount{}, mounts...), deviceBinds(o.Container.Devices)...)
		devices = nil
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: o.Container.TTY,
			User:     o.User,
			Args:     args,
			Env:      MergeEnv(o.Image.Env, o.Container.Env),
			Cwd:      cwd,
		},
		Root:     &specs.Root{Path: o.Rootfs},
		Hostname: o.Hostname,
		Mounts:   mergeMounts(defaultMounts(o.Sandbox), mounts),
		Linux: &specs.Linux{
			CgroupsPath:       o.CgroupsPath,
			Namespaces:        namespaces(o),
			Devices:           devices,
			Resources:         &specs.LinuxResources{Devices: rules},
			RootfsPropagation: rootfsPropagation(o.Container.Mounts),
		},
	}
	if o.Sandbox.UserNS != "" {
		s.Linux.UIDMappings = specIDMappings(o.Sandbox.UIDMappings)
		s.Linux.GIDMappings = specIDMappings(o.Sandbox.GIDMappings)
		for i := range s.Mounts {
			if slices.Contains(s.Mounts[i].Options, optIDMap) {
				s.Mounts[i].UIDMappings, s.Mounts[i].GIDMappings = s.Linux.UIDMappings, s.Linux.GIDMappings
			}
		}
	}
	if err := applySecurity(s, o.Security); err != nil {
		return nil, err
	}
	return s, nil
}

// permissions is the device's cgroup access, rwm when the request gives none.
func permissions(d Device) string {
	if d.Permissions == "" {
		return "rwm"
	}
	return d.Permissions
}

// deviceBinds are the bind mounts that give a container in a user namespace its devices.
func deviceBinds(devs []Device) []Mount {
	var out []Mount
	for _, d := range devs {
		dst := d.ContainerPath
		if dst == "" {
			dst = d.HostPath
		}
		out = append(out, Mount{ContainerPath: dst, HostPath: d.HostPath, Readonly: !strings.Contains(permissions(d), "w")})
	}
	return out
}

// processArgs applies the CRI rule: the request's command replaces the image's entrypoint,
// the request's args replace the image's cmd, and the image's cmd is dropped altogether when
// the request gives a command (it belonged to the image's entrypoint).
func processArgs(img ImageConfig, c ContainerConfig) []string {
	cmd := c.Command
	if len(cmd) == 0 {
		cmd = img.Entrypoint
	}
	args := c.Args
	if len(args) == 0 && len(c.Command) == 0 {
		args = img.Cmd
	}
	return append(append([]string{}, cmd...), args...)
}

// MergeEnv merges image and request environments: the request wins, order of first
// appearance is kept, and PATH gets the default when neither sets it.
func MergeEnv(image, request []string) []string {
	var out []string
	index := map[string]int{}
	add := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			return
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range image {
		add(kv)
	}
	for _, kv := range request {
		add(kv)
	}
	if _, ok := index["PATH"]; !ok {
		out = append(out, DefaultPath)
	}
	return out
}

func namespaces(o SpecOptions) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if !o.Sandbox.HostPID {
		ns = append([]specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: o.Sandbox.PIDNS}}, ns...)
	}
	// A namespace left out of the list is the host's (the spawning process's).
	for _, n := range []specs.LinuxNamespace{
		{Type: specs.NetworkNamespace, Path: o.Sandbox.NetNS},
		{Type: specs.IPCNamespace, Path: o.Sandbox.IPCNS},
		{Type: specs.UTSNamespace, Path: o.Sandbox.UTSNS},
		{Type: specs.UserNamespace, Path: o.Sandbox.UserNS},
	} {
		if n.Path != "" {
			ns = append(ns, n)
		}
	}
	if o.CgroupNS {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return ns
}

// linuxDevices stats each host device: the init creates the node from its type and numbers,
// and the cgroup device rules allow exactly those numbers with the requested access.
func linuxDevices(devs []Device) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var out []specs.LinuxDevice
	var rules []specs.LinuxDeviceCgroup
	for _, d := range devs {
		var st unix.Stat_t
		if err := unix.Stat(d.HostPath, &st); err != nil {
			return nil, nil, fmt.Errorf("stat device %s: %w", d.HostPath, err)
		}
		typ := ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return nil, nil, fmt.Errorf("device %s is not a character or block device", d.HostPath)
		}
		mode := os.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		dst := d.ContainerPath
		if dst == "" {
			dst = d.HostPath
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		out = append(out, specs.LinuxDevice{
			Path: dst, Type: typ, Major: major, Minor: minor,
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		rules = append(rules, specs.LinuxDeviceCgroup{
			Allow: true, Type: typ, Major: &major, Minor: &minor, Access: permissions(d),
		})
	}
	return out, rules, nil
}

// rootfsPropagation is what the init makes of "/" before it builds the rootfs: rslave, so that
// nothing mounted in the container reaches the host, unless a mount asks for bidirectional
// propagation. That mount must stay in its host peer group, which a slave copy would leave,
// so "/" is then rshared (as containerd asks runc to do).
func rootfsPropagation(mounts []Mount) string {
	for _, m := range mounts {
		if m.Propagation == PropagationBidirectional {
			return "rshared"
		}
	}
	return "rslave"
}
