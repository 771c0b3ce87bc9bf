package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Security is the container's security context, as the request gives it.
type Security struct {
	// Privileged: every available capability, every host device, no masked or read-only
	// paths, /sys read-write.
	Privileged bool
	// CapAdd and CapDrop are canonical names ("CAP_NET_ADMIN") or "ALL"; see
	// ResolveCapabilities. AmbientCaps are raised in the ambient set (non-root users).
	CapAdd, CapDrop, AmbientCaps []string
	// AllCaps is what "ALL" and privileged mean: the capabilities the spawner can grant
	// (AvailableCapabilities).
	AllCaps        []string
	NoNewPrivs     bool
	ReadonlyRootfs bool
	// MaskedPaths and ReadonlyPaths replace the defaults when not empty (containerd's rule:
	// an empty list means the defaults).
	MaskedPaths, ReadonlyPaths []string
	// HostDevDir is where the host's device nodes are listed for privileged containers
	// ("" means /dev).
	HostDevDir string
}

// applySecurity sets the process's capabilities and no_new_privs, the masked and read-only
// paths, the read-only rootfs and, for privileged containers, the host's devices and a
// writable /sys.
func applySecurity(s *specs.Spec, sec Security) error {
	caps := ResolveCapabilities(sec.CapAdd, sec.CapDrop, sec.AllCaps)
	if sec.Privileged {
		caps = slices.Clone(sec.AllCaps)
	}
	s.Process.Capabilities = processCapabilities(caps, sec.AmbientCaps, s.Process.User.UID)
	s.Process.NoNewPrivileges = sec.NoNewPrivs
	s.Root.Readonly = sec.ReadonlyRootfs
	s.Linux.MaskedPaths = DefaultMaskedPaths()
	if len(sec.MaskedPaths) > 0 {
		s.Linux.MaskedPaths = slices.Clone(sec.MaskedPaths)
	}
	s.Linux.ReadonlyPaths = DefaultReadonlyPaths()
	if len(sec.ReadonlyPaths) > 0 {
		s.Linux.ReadonlyPaths = slices.Clone(sec.ReadonlyPaths)
	}
	if !sec.Privileged {
		return nil
	}
	s.Linux.MaskedPaths = nil
	s.Linux.ReadonlyPaths = nil
	for i, m := range s.Mounts {
		if m.Destination == "/sys" && m.Type == "sysfs" {
			s.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
			s.Mounts[i].Options = append(s.Mounts[i].Options, "rw")
		}
	}
	dir := sec.HostDevDir
	if dir == "" {
		dir = "/dev"
	}
	devs, err := hostDevices(dir)
	if err != nil {
		return err
	}
	// The request's devices stay (they may map a host node to another path); host nodes
	// at the same path are left out.
	for _, d := range devs {
		if !slices.ContainsFunc(s.Linux.Devices, func(o specs.LinuxDevice) bool { return o.Path == d.Path }) {
			s.Linux.Devices = append(s.Linux.Devices, d)
		}
	}
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	return nil
}

// skipHostDev tells the parts of the host's /dev a privileged container does not get as
// nodes: the init makes its own /dev/pts, /dev/shm, /dev/mqueue, /dev/ptmx and console,
// and binds the standard nodes from the host (creating them again would chown the host's
// nodes through the bind mounts).
func skipHostDev(rel string) bool {
	switch rel {
	case "pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev", "console", "ptmx",
		"null", "zero", "full", "random", "urandom", "tty":
		return true
	}
	return false
}

// hostDevices lists the character and block devices under dir as container devices at
// the same path below /dev (what containerd and runc give privileged containers).
func hostDevices(dir string) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// A node that vanished while walking (hot-unplug) is not an error.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if skipHostDev(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("stat host device %s: %w", p, err)
		}
		typ := "c"
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			typ = "b"
		}
		mode := os.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		out = append(out, specs.LinuxDevice{
			Path: filepath.Join("/dev", rel), Type: typ,
			Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices in %s: %w", dir, err)
	}
	return out, nil
}
