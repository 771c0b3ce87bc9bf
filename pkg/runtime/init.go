package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// InitMain is the container init ("cri-mini init"), run by Create in the container's new PID
// and mount namespaces. It must run on the main goroutine locked to the main thread
// (cmd/cri-mini's init() does it). It only returns on failure, with the exit code to use;
// the failure has been reported to the parent.
func InitMain() int {
	syncF := os.NewFile(fdSync, "sync")
	fail := func(err error) int {
		_ = writeMsg(syncF, message{Type: msgError, Error: err.Error()})
		return 1
	}
	// Blocks until the parent has placed this process in its cgroup.
	cfg, err := readChildConfig()
	if err != nil {
		return fail(err)
	}
	if cfg.Spec == nil || cfg.Spec.Process == nil || cfg.Spec.Root == nil || cfg.Spec.Linux == nil {
		return fail(errors.New("incomplete spec"))
	}
	if err := initContainer(cfg.Spec, cfg.MountSources); err != nil {
		return fail(err)
	}
	argv0, err := prepareProcess(cfg.Spec.Process, cfg.Spec.Linux.Seccomp)
	if err != nil {
		return fail(err)
	}
	if err := writeMsg(syncF, message{Type: msgReady}); err != nil {
		return 1
	}
	// CREATED: nothing of the container runs until the parent says start.
	m, err := readMsg(json.NewDecoder(syncF))
	if err != nil {
		return 1 // the parent is gone or gave up on us: never run the container's program
	}
	if m.Type != msgStart {
		return fail(fmt.Errorf("expected start, got %q", m.Type))
	}
	return fail(execProcess(argv0, cfg.Spec.Process))
}

// initContainer applies DESIGN section 6 steps 1 to 5 (and the part of 6 that is not
// security) in runc's order. sources are the descriptors of bind sources the parent opened
// (ChildConfig.MountSources).
func initContainer(s *specs.Spec, sources map[int]int) error {
	rootfs := s.Root.Path
	// 1. Propagation: nothing we mount may propagate back to the host (rslave), and the
	// rootfs becomes a mount of its own, which pivot_root needs.
	prop := unix.MS_SLAVE | unix.MS_REC
	if p, ok := propagationFlags[s.Linux.RootfsPropagation]; ok {
		prop = int(p)
	}
	if err := unix.Mount("", "/", "", uintptr(prop), ""); err != nil {
		return fmt.Errorf("set propagation of /: %w", err)
	}
	// pivot_root(2) refuses a new root whose parent mount is shared.
	if err := unix.Mount("", rootfs, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make rootfs mount private: %w", err)
	}
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s onto itself: %w", rootfs, err)
	}
	if err := mountAll(s, sources); err != nil {
		return err
	}
	// 4. Switch root.
	if err := pivotRoot(rootfs); err != nil {
		return err
	}
	// 5. Hide and protect what the kernel exposes about the host.
	if err := maskPaths(s.Linux.MaskedPaths); err != nil {
		return err
	}
	if err := readonlyPaths(s.Linux.ReadonlyPaths); err != nil {
		return err
	}
	if s.Root.Readonly {
		// The working dir is created when missing (prepareProcess): do it while it can be.
		if cwd := s.Process.Cwd; cwd != "" {
			if err := os.MkdirAll(cwd, 0o755); err != nil {
				return fmt.Errorf("create working directory %s: %w", cwd, err)
			}
		}
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount rootfs read-only: %w", err)
		}
	}
	// The hostname is the pod's: the UTS namespace was joined, not created.
	return nil
}

// mountAll makes the spec's mounts (steps 2 and 3), every target resolved inside the rootfs.
func mountAll(s *specs.Spec, sources map[int]int) error {
	root, err := os.OpenFile(s.Root.Path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs %s: %w", s.Root.Path, err)
	}
	defer root.Close()
	devDone := false
	for i, m := range s.Mounts {
		src, ok := sources[i]
		if !ok {
			src = -1
		}
		if err := mountOne(root, s.Root.Path, m, src); err != nil {
			return err
		}
		// /dev's nodes go in right after its tmpfs, before anything mounts under /dev.
		if filepath.Clean(m.Destination) == "/dev" {
			if err := setupDev(root, s.Root.Path, s); err != nil {
				return err
			}
			devDone = true
		}
	}
	if !devDone {
		return setupDev(root, s.Root.Path, s)
	}
	return nil
}

// pivotRoot switches to the rootfs with the pivot_root(".", ".") trick (runc, lxc): no
// directory for the old root is needed inside the image, and the old root, stacked on the
// new one, is detached right away. It is made a slave first so the detach cannot propagate
// unmounts to the host.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open new root %s: %w", rootfs, err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("chdir to new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir to old root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to /: %w", err)
	}
	return nil
}

// maskPaths binds /dev/null over files and an empty read-only tmpfs over directories.
func maskPaths(paths []string) error {
	for _, p := range paths {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat masked path %s: %w", p, err)
		}
		if st.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// readonlyPaths binds each path onto itself and remounts it read-only, keeping the nosuid,
// nodev and noexec flags it had.
func readonlyPaths(paths []string) error {
	for _, p := range paths {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("statfs read-only path %s: %w", p, err)
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind read-only path %s: %w", p, err)
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		for bit, ms := range map[int64]uintptr{unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC} {
			if st.Flags&bit != 0 {
				flags |= ms
			}
		}
		if err := unix.Mount("", p, "", flags, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", p, err)
		}
	}
	return nil
}
