package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"strictatime": {false, unix.MS_STRICTATIME}, "relatime": {false, unix.MS_RELATIME},
	"noatime": {false, unix.MS_NOATIME}, "nodiratime": {false, unix.MS_NODIRATIME},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
}

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits OCI mount options into mount flags, propagation flags and the
// filesystem's data string.
func parseMountOptions(opts []string) (flags, prop uintptr, data string) {
	var d []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
		} else if p, ok := propagationFlags[o]; ok {
			prop |= p
		} else {
			d = append(d, o)
		}
	}
	return flags, prop, strings.Join(d, ",")
}

// fdPath names an open handle so that mount(2) acts on exactly the inode that was resolved
// inside the rootfs, even if a path component were swapped for a symlink afterwards.
func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// mountTarget resolves dst inside the rootfs (symlinks are followed as if the rootfs were
// "/", so an image's /etc/hosts -> /host-file lands on <rootfs>/host-file, never on the
// host), creates it as a directory or an empty file when missing, and returns an O_PATH
// handle to it.
func mountTarget(root *os.File, rootfs, dst string, dir bool) (*os.File, error) {
	if dir {
		h, err := pathrs.MkdirAllHandle(root, dst, 0o755)
		if err != nil {
			return nil, fmt.Errorf("create mount point %s in the rootfs: %w", dst, err)
		}
		return h, nil
	}
	h, err := pathrs.OpenatInRoot(root, dst)
	if err == nil {
		return h, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("resolve mount point %s in the rootfs: %w", dst, err)
	}
	joined, err := securejoin.SecureJoin(rootfs, dst)
	if err != nil {
		return nil, fmt.Errorf("resolve mount point %s in the rootfs: %w", dst, err)
	}
	rel, err := filepath.Rel(rootfs, joined)
	if err != nil {
		return nil, fmt.Errorf("resolve mount point %s in the rootfs: %w", dst, err)
	}
	parent, err := pathrs.MkdirAllHandle(root, filepath.Dir(rel), 0o755)
	if err != nil {
		return nil, fmt.Errorf("create parent of mount point %s: %w", dst, err)
	}
	defer parent.Close()
	fd, err := unix.Openat(int(parent.Fd()), filepath.Base(rel), unix.O_CREAT|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create mount point %s: %w", dst, err)
	}
	_ = unix.Close(fd)
	h, err = pathrs.OpenatInRoot(root, dst)
	if err != nil {
		return nil, fmt.Errorf("open mount point %s: %w", dst, err)
	}
	return h, nil
}

// mountOne mounts m inside the rootfs. src, unless -1, is the descriptor of the bind's
// source opened by the parent (mountSources); it is closed once attached.
func mountOne(root *os.File, rootfs string, m specs.Mount, src int) error {
	if src >= 0 {
		defer unix.Close(src)
	}
	flags, prop, data := parseMountOptions(m.Options)
	bind := isBind(m.Type, flags)
	dir := true
	if bind {
		var err error
		if dir, err = sourceIsDir(src, m); err != nil {
			return err
		}
	}
	t, err := mountTarget(root, rootfs, m.Destination, dir)
	if err != nil {
		return err
	}
	defer t.Close()
	if bind && src >= 0 {
		err = attachSource(src, t, m)
	} else {
		err = mountOn(fdPath(t), m, bind, flags, data)
	}
	if err != nil {
		return err
	}
	rest := flags &^ (unix.MS_BIND | unix.MS_REC)
	if (!bind || rest == 0) && prop == 0 {
		return nil
	}
	// The handle still names the directory under the new mount: the remount and the
	// propagation change need a handle on the mount itself, resolved again in the rootfs.
	top, err := pathrs.OpenatInRoot(root, m.Destination)
	if err != nil {
		return fmt.Errorf("reopen mount %s: %w", m.Destination, err)
	}
	defer top.Close()
	if bind && rest != 0 {
		// Per-mount flags of a bind need a remount (mount(2): they are ignored on the
		// initial MS_BIND).
		if err := unix.Mount("", fdPath(top), "", unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
			return fmt.Errorf("remount %s with %v: %w", m.Destination, m.Options, err)
		}
	}
	if prop != 0 {
		if err := unix.Mount("", fdPath(top), "", prop, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return recursiveReadonly(top, m)
}

func mountOn(target string, m specs.Mount, bind bool, flags uintptr, data string) error {
	if bind {
		if err := unix.Mount(m.Source, target, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", m.Source, m.Destination, err)
		}
		return nil
	}
	if err := unix.Mount(m.Source, target, m.Type, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
	}
	return nil
}

// setupDev populates the container's /dev tmpfs: the standard nodes bound from the host
// (binding instead of mknod keeps working inside a user namespace later), the spec's
// devices, /dev/ptmx for the devpts instance and the fd links.
func setupDev(root *os.File, rootfs string, spec *specs.Spec) error {
	dev, err := pathrs.MkdirAllHandle(root, "/dev", 0o755)
	if err != nil {
		return fmt.Errorf("open /dev in the rootfs: %w", err)
	}
	defer dev.Close()
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bindDevNode(dev, n); err != nil {
			return err
		}
	}
	for _, d := range spec.Linux.Devices {
		if err := mknodDevice(root, d); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"},
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], int(dev.Fd()), l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create /dev/%s: %w", l[1], err)
		}
	}
	if spec.Process.Terminal {
		// The terminal is the init's stdin (the pty replica the spawner passed).
		if err := mountOne(root, rootfs, specs.Mount{
			Destination: "/dev/console", Type: "bind", Source: consoleSource(), Options: []string{"bind"},
		}, -1); err != nil {
			return err
		}
	}
	return nil
}

// bindDevNode binds the host's /dev/<name> onto a file of that name in dev (the rootfs's
// /dev, resolved inside the rootfs once for all nodes). The name is one path component
// opened with O_NOFOLLOW relative to that handle, and a symlink or directory there is
// refused, so the target cannot be redirected out of the directory: what mountTarget
// would resolve, without resolving /dev again (and checking the result through procfs)
// for each node. An existing node is opened O_PATH: opening a device can act on it.
func bindDevNode(dev *os.File, name string) error {
	fd, err := unix.Openat(int(dev.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		fd, err = unix.Openat(int(dev.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o644)
	}
	if err != nil {
		return fmt.Errorf("create mount point /dev/%s: %w", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat mount point /dev/%s: %w", name, err)
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFLNK || t == unix.S_IFDIR {
		return fmt.Errorf("mount point /dev/%s in the rootfs is not a file (mode %o)", name, st.Mode)
	}
	if err := unix.Mount("/dev/"+name, "/proc/self/fd/"+strconv.Itoa(fd), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind /dev/%s on /dev/%s: %w", name, name, err)
	}
	return nil
}

// consoleSource names the terminal on stdin by a path of this mount namespace. A bind from
// /proc/self/fd/0 fails with EINVAL: the descriptor was opened before the namespace was
// cloned, so its mount belongs to the parent's namespace (do_loopback's check_mnt). The
// copy of the host's /dev/pts in this namespace holds the same replica, by the name the
// descriptor has (the rootfs is not pivoted yet).
func consoleSource() string {
	name, err := os.Readlink("/proc/self/fd/0")
	if err == nil && strings.HasPrefix(name, "/dev/pts/") && filepath.Clean(name) == name {
		return name
	}
	return "/proc/self/fd/0"
}

func mknodDevice(root *os.File, d specs.LinuxDevice) error {
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode & 0o777)
	}
	switch d.Type {
	case "c", "u":
		mode |= unix.S_IFCHR
	case "b":
		mode |= unix.S_IFBLK
	default:
		return fmt.Errorf("device %s: unsupported type %q", d.Path, d.Type)
	}
	parent, err := pathrs.MkdirAllHandle(root, filepath.Dir(d.Path), 0o755)
	if err != nil {
		return fmt.Errorf("create parent of device %s: %w", d.Path, err)
	}
	defer parent.Close()
	name := filepath.Base(d.Path)
	dirfd := int(parent.Fd())
	if err := unix.Mknodat(dirfd, name, mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mknod %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown device %s: %w", d.Path, err)
	}
	return nil
}
