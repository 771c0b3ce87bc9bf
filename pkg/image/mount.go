package image

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/overlay"
)

// MountReadOnly mounts the layers of the image ref names read-only at target (an existing
// directory), for image volumes: an overlay with only lower dirs, or a read-only bind mount when
// the image has a single layer (overlay needs at least two lower dirs without an upper dir).
// The caller keeps the image in use (Options.InUse) while it is mounted.
func (s *Service) MountReadOnly(ctx context.Context, ref, target string) error {
	base, dirs, err := s.LowerDirs(ref)
	if err != nil {
		return err
	}
	switch len(dirs) {
	case 0:
		return fmt.Errorf("image %s has no layers to mount", ref)
	case 1:
		return bindReadOnly(filepath.Join(base, dirs[0]), target)
	}
	abs := make([]string, len(dirs))
	for i, d := range dirs {
		abs[i] = filepath.Join(base, d)
	}
	if err := overlay.Mount(overlay.Options{Lowers: abs, ReadOnly: true}, target); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Image mounted read-only", "image", ref, "target", target, "layers", len(dirs))
	return nil
}

// Unmount detaches a mount made by MountReadOnly.
func Unmount(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

func bindReadOnly(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", src, target, err)
	}
	// MS_RDONLY is ignored on the initial bind: it takes a remount (mount(2)).
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("remount %s read-only: %w", target, err)
	}
	return nil
}
