package runtime

import (
	"path"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultMaskedPaths are hidden from containers (bind /dev/null over files, an empty
// read-only tmpfs over directories): the list runc and containerd use. They leak host
// information (kcore, keys, timers) or give access to firmware and power controls.
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
}

// DefaultReadonlyPaths are remounted read-only: writing them would change the host kernel,
// not the container (sysctls outside the container's namespaces, sysrq, irq affinity).
func DefaultReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// defaultMounts are the mounts every container gets (containerd's defaults plus the pod's
// files). The pod's /dev/shm is shared by all its containers; with host IPC it is the host's.
func defaultMounts(sb SandboxPaths) []specs.Mount {
	shm := sb.Shm
	if shm == "" {
		shm = "/dev/shm"
	}
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/dev/shm", Type: "bind", Source: shm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}},
	}
	for _, f := range []struct{ dst, src string }{
		{"/etc/hosts", sb.Hosts},
		{"/etc/resolv.conf", sb.ResolvConf},
		{"/etc/hostname", sb.HostnameFile},
	} {
		if f.src == "" {
			continue
		}
		ms = append(ms, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: []string{"rbind", "rprivate"}})
	}
	return ms
}

// optIDMap is the OCI mount option (runc's) for a bind seen through the mappings of the
// container's user namespace (the mount's uidMappings and gidMappings).
const optIDMap = "idmap"

// mergeMounts appends the request's bind mounts; a request mount replaces a default mount at
// the same destination (kubelet manages /etc/hosts itself for some pods, for example).
func mergeMounts(defaults []specs.Mount, req []Mount) []specs.Mount {
	taken := map[string]bool{}
	var extra []specs.Mount
	for _, m := range req {
		dst := path.Clean("/" + m.ContainerPath)
		taken[dst] = true
		opts := []string{"rbind"}
		switch m.Propagation {
		case PropagationHostToContainer:
			opts = append(opts, "rslave")
		case PropagationBidirectional:
			opts = append(opts, "rshared")
		default:
			opts = append(opts, "rprivate")
		}
		if m.Readonly {
			opts = append(opts, "ro")
			if m.RecursiveReadOnly {
				opts = append(opts, optRecursiveReadonly)
			}
		} else {
			opts = append(opts, "rw")
		}
		if m.IDMapped {
			opts = append(opts, optIDMap)
		}
		extra = append(extra, specs.Mount{Destination: dst, Type: "bind", Source: m.HostPath, Options: opts})
	}
	var out []specs.Mount
	for _, m := range defaults {
		if !taken[m.Destination] {
			out = append(out, m)
		}
	}
	out = append(out, extra...)
	// Parents before children (/dev before /dev/pts), otherwise in the given order: a mount
	// made under a later one would be hidden by it.
	sort.SliceStable(out, func(i, j int) bool {
		return depth(out[i].Destination) < depth(out[j].Destination)
	})
	return out
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(path.Clean(p), "/")
}
