package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idmap"
	"github.com/cri-mini/cri-mini/pkg/overlay"
)

// Rootfs is a container's writable root: an overlay of the image's layers with the
// container's own upper and work directories, all under Dir.
type Rootfs struct {
	Dir  string // container directory holding upper/, work/ and rootfs/
	Path string // the mounted overlay (Dir/rootfs), the spec's root.path
}

// UserNamespace is the pod's user namespace for a container whose rootfs is idmapped into it.
type UserNamespace struct {
	// File is the namespace's nsfs file. When nil, Path (a /proc/<pid>/ns/user or the
	// namespace's pin) is opened for the time of the mount.
	File *os.File
	Path string
	// UID and GID are the host ids of the container's root: the host start of the
	// namespace's uid and gid mappings.
	UID, GID int
}

// MountRootfs creates Dir/{upper,work,rootfs} and mounts the overlay of the layers (the
// directory names under base, top layer first, as image.LowerDirs returns them) on
// Dir/rootfs. On error nothing it created is left behind.
//
// pkg/overlay explains how deep images fit the kernel's limits on overlay options.
func MountRootfs(base string, layers []string, dir string) (*Rootfs, error) {
	return mountRootfs(base, layers, dir, nil)
}

// MountRootfsUserNS is MountRootfs for a container in the user namespace u: every layer is
// idmapped into u, so the image's root-owned files are the container root's own and what it
// writes lands in upper/ owned by u.UID:u.GID on the host; the layers are not touched.
//
// The container's root (host uid u.UID, unprivileged on the host) walks the host path to
// Dir/rootfs when it sets up its mounts, so every directory above Dir must be searchable by
// it (the daemon's are 0711); a missing parent is created 0711, an existing closed one is an
// error. Dir itself is root:u.GID 0710: only the pod's root group may pass through it, and
// nobody but host root may list it or reach upper/ and work/, which are 0755 because the
// overlay's root directory takes upper/'s mode.
func MountRootfsUserNS(base string, layers []string, dir string, u UserNamespace) (*Rootfs, error) {
	return mountRootfs(base, layers, dir, &u)
}

func mountRootfs(base string, layers []string, dir string, u *UserNamespace) (_ *Rootfs, retErr error) {
	r := &Rootfs{Dir: dir, Path: filepath.Join(dir, "rootfs")}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("container directory %s already exists", dir)
	}
	if u != nil {
		if err := searchableParents(dir, u); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create container directory %s: %w", dir, err)
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := makeRootfsDirs(dir, u); err != nil {
		return nil, err
	}
	lowers := make([]string, 0, len(layers)+1)
	for _, l := range layers {
		lowers = append(lowers, filepath.Join(base, l))
	}
	if len(lowers) == 0 {
		// An image without layers (FROM scratch, nothing added) still needs one lower dir.
		empty := filepath.Join(dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return nil, fmt.Errorf("create empty lower directory: %w", err)
		}
		lowers = append(lowers, empty)
	}
	o := overlay.Options{Lowers: lowers, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	if err := mountOverlay(o, r.Path, u); err != nil {
		return nil, err
	}
	return r, nil
}

// makeRootfsDirs creates upper/, work/ and rootfs/ in dir; for a user namespace it hands
// them to the container's root and opens dir to its group (see MountRootfsUserNS).
func makeRootfsDirs(dir string, u *UserNamespace) error {
	if u != nil {
		if err := os.Chown(dir, 0, u.GID); err != nil {
			return fmt.Errorf("give container directory %s to group %d: %w", dir, u.GID, err)
		}
		if err := os.Chmod(dir, 0o710); err != nil {
			return fmt.Errorf("open container directory %s to group %d: %w", dir, u.GID, err)
		}
	}
	for _, d := range []string{"upper", "work", "rootfs"} {
		// 0755 on rootfs/: the overlay root takes the upper dir's mode, and a container
		// running as non-root must be able to traverse "/".
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("create %s directory: %w", d, err)
		}
		if u == nil {
			continue
		}
		// upper/ is the overlay's "/": owned by the container's root, it is 0:0 inside as
		// an image expects. New files take the writer's fsuid whoever owns upper/; work/
		// is used with the mounter's credentials only, and rootfs/ is covered by the
		// mount: they follow upper/ so that nothing of the container is half handed over.
		if err := os.Chown(p, u.UID, u.GID); err != nil {
			return fmt.Errorf("give %s directory to %d:%d: %w", d, u.UID, u.GID, err)
		}
	}
	return nil
}

// mountOverlay mounts o on target, its layers idmapped into u when there is one.
func mountOverlay(o overlay.Options, target string, u *UserNamespace) error {
	if u == nil {
		return overlay.Mount(o, target)
	}
	o.UserNS = u.File
	if o.UserNS == nil {
		f, err := idmap.OpenUserNS(u.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		o.UserNS = f
	}
	return overlay.Mount(o, target)
}

// searchableParents creates dir's missing parents 0711 and checks that the container's root
// (an unprivileged host uid, without CAP_DAC_OVERRIDE over host root's files: the kernel
// grants capabilities only over inodes whose owner is mapped in the namespace) can walk
// every directory above dir.
func searchableParents(dir string, u *UserNamespace) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	return searchablePath(parent, u)
}

// Passable checks that anyone (the root of any pod's user namespace: host IDs that own
// nothing on the path) may walk dir and every directory above it, as MountRootfsUserNS
// needs for the containers' dirs below dir.
func Passable(dir string) error {
	return searchablePath(filepath.Clean(dir), &UserNamespace{UID: -1, GID: -1})
}

// searchablePath checks that u's root may walk dir and every directory above it.
func searchablePath(dir string, u *UserNamespace) error {
	for p := dir; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if !searchable(&st, u) {
			return fmt.Errorf("directory %s (mode %#o, owner %d:%d) is closed to the container's root (host uid %d, gid %d), which must walk through it to its rootfs",
				p, st.Mode&0o7777, st.Uid, st.Gid, u.UID, u.GID)
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

// searchable applies the kernel's permission bits (owner, else group, else others) for
// search, as the container's root.
func searchable(st *unix.Stat_t, u *UserNamespace) bool {
	switch {
	case int(st.Uid) == u.UID:
		return st.Mode&0o100 != 0
	case int(st.Gid) == u.GID:
		return st.Mode&0o010 != 0
	}
	return st.Mode&0o001 != 0
}

// RemoveRootfs unmounts the container's rootfs and removes its directory. It is idempotent,
// and it refuses to remove anything while the rootfs is still a mount point, so a failed
// unmount can never turn into deleting the image's layers through the overlay.
func RemoveRootfs(dir string) error {
	target := filepath.Join(dir, "rootfs")
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount rootfs %s: %w", target, err)
	}
	mounted, err := isMountPoint(target)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("rootfs %s is still mounted after unmount", target)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove container directory %s: %w", dir, err)
	}
	return nil
}

// isMountPoint compares the mount ids of dir and its parent (statx), which also catches a
// bind mount from the same filesystem.
func isMountPoint(dir string) (bool, error) {
	var st, pst unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statx %s: %w", dir, err)
	}
	if err := unix.Statx(unix.AT_FDCWD, filepath.Dir(dir), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &pst); err != nil {
		return false, fmt.Errorf("statx %s: %w", filepath.Dir(dir), err)
	}
	return st.Mnt_id != pst.Mnt_id, nil
}
