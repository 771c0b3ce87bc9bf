package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/overlay"
)

// Rootfs is a container's writable root: an overlay of the image's layers with the
// container's own upper and work directories, all under Dir.
type Rootfs struct {
	Dir  string // container directory holding upper/, work/ and rootfs/
	Path string // the mounted overlay (Dir/rootfs), the spec's root.path
}

// MountRootfs creates Dir/{upper,work,rootfs} and mounts the overlay of the layers (the
// directory names under base, top layer first, as image.LowerDirs returns them) on
// Dir/rootfs. On error nothing it created is left behind.
//
// pkg/overlay explains how deep images fit the kernel's limits on overlay options.
func MountRootfs(base string, layers []string, dir string) (_ *Rootfs, retErr error) {
	r := &Rootfs{Dir: dir, Path: filepath.Join(dir, "rootfs")}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("container directory %s already exists", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create container directory %s: %w", dir, err)
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, d := range []string{"upper", "work", "rootfs"} {
		// 0755 on rootfs/: the overlay root takes the upper dir's mode, and a container
		// running as non-root must be able to traverse "/".
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("create %s directory: %w", d, err)
		}
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
	if err := overlay.Mount(o, r.Path); err != nil {
		return nil, err
	}
	return r, nil
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
