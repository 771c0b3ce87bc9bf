// Package idmap makes detached mounts for a container that runs in a user namespace: a copy
// of a mount tree that a process in the namespace attaches with move_mount(2), optionally
// idmapped into the namespace (mount_setattr(2) MOUNT_ATTR_IDMAP, Linux 5.12).
//
// A process in a pod's user namespace runs as an unprivileged host uid: it cannot see files
// owned by host root as its own, and it may not even be able to walk to a source path
// (root-owned 0700 directories are closed to it). An idmapped mount shows every file owned
// by host uid U as owned by whatever U maps to in the namespace, and writes through it land
// with the unmapped ids: container root (host uid H) sees a host root-owned tree as 0:0 and
// the files it creates there are owned by host root. A detached mount, a descriptor, needs
// no path walk at all.
//
// The kernel's rules (fs/namespace.c, can_idmap_mount and build_mount_idmapped):
//   - only a detached mount (open_tree OPEN_TREE_CLONE) can be idmapped, else EINVAL;
//   - the filesystem must opt in (FS_ALLOW_IDMAP), else EINVAL. On Linux 6.18: ext4, xfs,
//     btrfs and tmpfs (since 6.3) do; proc, sysfs, devtmpfs, devpts, cgroup (v1) and
//     overlayfs itself do not. With AT_RECURSIVE one such submount fails the whole tree;
//   - a mount is idmapped once: mapping an idmapped mount again is EPERM;
//   - the descriptor must be a user namespace (EINVAL otherwise) other than the initial
//     one (EPERM), in which the caller has CAP_SYS_ADMIN (EPERM).
package idmap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Clone returns a detached copy of the mount at src (with the mounts below it when
// recursive, as a recursive bind does), not idmapped: for a source a process in a user
// namespace cannot reach itself. The caller closes the descriptor; closing an unattached
// tree unmounts it.
func Clone(src string, recursive bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return nil, fmt.Errorf("clone mount %s: this kernel lacks open_tree (Linux 5.2): %w", src, err)
		}
		return nil, fmt.Errorf("clone mount %s: %w", src, err)
	}
	return os.NewFile(uintptr(fd), "detached:"+src), nil
}

// CloneIdmapped returns a detached copy of the mount at src (and of the mounts below it when
// recursive) idmapped into userns, an open nsfs file of a user namespace (see OpenUserNS):
// the mapping of that namespace applies to every file seen or created through the copy.
func CloneIdmapped(src string, userns *os.File, recursive bool) (_ *os.File, retErr error) {
	tree, err := Clone(src, recursive)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			tree.Close()
		}
	}()
	var flags uint = unix.AT_EMPTY_PATH
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(int(tree.Fd()), "", flags, &attr); err != nil {
		return nil, idmapError(src, tree, userns, err)
	}
	return tree, nil
}

// idmapError says which of the kernel's rules (see the package comment) refused src.
func idmapError(src string, tree, userns *os.File, err error) error {
	switch {
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("idmap mount %s: this kernel lacks mount_setattr (Linux 5.12): %w", src, err)
	case errors.Is(err, unix.EINVAL) && !isUserNS(userns):
		return fmt.Errorf("idmap mount %s: %s is not a user namespace: %w", src, userns.Name(), err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("idmap mount %s: its filesystem (%s) or a mount below it does not support idmapped mounts: %w", src, fsType(tree), err)
	}
	return fmt.Errorf("idmap mount %s into user namespace %s: %w", src, userns.Name(), err)
}

// OpenUserNS opens a user namespace's nsfs file (a /proc/<pid>/ns/user or a bind mount of
// one) and checks that it is one.
func OpenUserNS(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	if !isUserNS(f) {
		f.Close()
		return nil, fmt.Errorf("open user namespace: %s is not a user namespace", path)
	}
	return f, nil
}

func isUserNS(f *os.File) bool {
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	return err == nil && t == unix.CLONE_NEWUSER
}

// fsType names the filesystem of the mount at fd, for errors.
func fsType(f *os.File) string {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return "unknown"
	}
	names := map[int64]string{
		unix.PROC_SUPER_MAGIC:      "proc",
		unix.SYSFS_MAGIC:           "sysfs",
		unix.DEVPTS_SUPER_MAGIC:    "devpts",
		unix.TMPFS_MAGIC:           "tmpfs or devtmpfs",
		unix.OVERLAYFS_SUPER_MAGIC: "overlay",
		unix.CGROUP_SUPER_MAGIC:    "cgroup",
		unix.CGROUP2_SUPER_MAGIC:   "cgroup2",
		unix.NSFS_MAGIC:            "nsfs",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("magic %#x", st.Type)
}

// Supported tells whether mounts of dir's filesystem can be idmapped into userns, an open
// user namespace other than the initial one: the kernel and the filesystem must allow it.
// A nil error means pod user namespaces can have their rootfs and volumes there.
func Supported(dir string, userns *os.File) error {
	tree, err := CloneIdmapped(dir, userns, false)
	if err != nil {
		return err
	}
	return tree.Close()
}
