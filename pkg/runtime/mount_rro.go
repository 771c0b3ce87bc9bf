package runtime

import (
	"fmt"
	"os"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// optRecursiveReadonly is the OCI mount option (runc's) for a recursively read-only bind.
const optRecursiveReadonly = "rro"

// recursiveReadonly makes the mount top and every mount below it read-only when m asks
// for it: MS_RDONLY on a bind remount only applies to the top mount, so a volume with
// submounts (a tmpfs inside a hostPath) would stay writable below. mount_setattr(2) with
// AT_RECURSIVE (Linux 5.12) changes the whole tree at once.
func recursiveReadonly(top *os.File, m specs.Mount) error {
	if !slices.Contains(m.Options, optRecursiveReadonly) {
		return nil
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(int(top.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("make %s recursively read-only: %w", m.Destination, err)
	}
	return nil
}

// checkRecursiveReadonly refuses what containerd refuses: a recursively read-only mount
// must be read-only, and private, since a mount propagated in later would be writable.
func checkRecursiveReadonly(ms []Mount) error {
	for _, m := range ms {
		if !m.RecursiveReadOnly {
			continue
		}
		if !m.Readonly {
			return fmt.Errorf("mount %s: recursive read-only needs a read-only mount", m.ContainerPath)
		}
		if m.Propagation != PropagationPrivate {
			return fmt.Errorf("mount %s: recursive read-only needs private propagation", m.ContainerPath)
		}
	}
	return nil
}
