// Package overlay mounts overlay filesystems of image layers: container root filesystems
// (with an upper and a work dir) and read-only image mounts (lower dirs only).
//
// Linux 6.8+ takes the lower dirs one "lowerdir+" at a time through the new mount API, with
// no limit on their number or length. Older kernels (Debian 12's 6.1, for one) only have the
// single "lowerdir=a:b:c" option, which mount(2) must carry in one 4096-byte page and
// fsconfig(2) caps at 256 bytes: deep images with absolute layer paths overflow both. The
// usual workaround, chdir into the layer store and pass short relative paths, changes the
// working directory of every thread of the process (threads share fs_struct). Instead each
// layer is opened and named by its descriptor, "/proc/self/fd/N" (at most 18 bytes), which
// the kernel's path walk follows to the directory.
//
// For a container in a user namespace each lower dir is an idmapped detached mount (see
// pkg/idmap), named the same way: overlay over idmapped layers needs Linux 5.19, and the
// overlay keeps its own private clone of every layer, so the descriptors are closed once it
// is created.
package overlay

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idmap"
)

// maxMountData is the size of the page mount(2) copies its options into.
const maxMountData = 4096

// Options describe an overlay. Lowers are top layer first, as overlay's lowerdir wants.
// Without Upper (and Work) the overlay is read-only.
type Options struct {
	Lowers      []string
	Upper, Work string
	// ReadOnly mounts it read-only, nosuid and nodev (image volumes).
	ReadOnly bool
	// UserNS, an open user namespace (nsfs file), idmaps every lower dir into it: a file
	// owned by host uid U in a layer is seen as owned by U's mapping in the namespace and
	// copied up with the unmapped id. The upper and work dirs are not idmapped; their owner
	// is the caller's choice.
	UserNS *os.File
}

// Mount mounts the overlay on target, an existing directory.
func Mount(o Options, target string) error {
	if len(o.Lowers) == 0 {
		return errors.New("overlay: no lower dir")
	}
	if (o.Upper == "") != (o.Work == "") {
		return errors.New("overlay: upper and work dirs go together")
	}
	if o.UserNS != nil {
		return mountIdmapped(o, target, mount)
	}
	return mount(o, target)
}

// mount tries the new mount API, then the legacy one.
func mount(o Options, target string) error {
	err := mountNewAPI(o, target)
	if !errors.Is(err, unix.EINVAL) {
		return err
	}
	// Before 6.8 overlay took its options as one legacy data string: fsconfig accepts any
	// key into it and the kernel refuses "lowerdir+" only when the string is parsed, with
	// EINVAL at create (or at a set, once the string outgrows a page).
	if lerr := mountLegacy(o, target); lerr != nil {
		return fmt.Errorf("%w (with lowerdir+: %v)", lerr, err)
	}
	return nil
}

// mountIdmapped replaces every lower dir with an idmapped detached mount of it, named by its
// descriptor, for the time of the mount (by mnt, which tests choose).
func mountIdmapped(o Options, target string, mnt func(Options, string) error) error {
	lowers := make([]string, 0, len(o.Lowers))
	for _, l := range o.Lowers {
		tree, err := idmap.CloneIdmapped(l, o.UserNS, false)
		if err != nil {
			return fmt.Errorf("overlay layer: %w", err)
		}
		defer tree.Close()
		lowers = append(lowers, "/proc/self/fd/"+strconv.Itoa(int(tree.Fd())))
	}
	o.Lowers, o.UserNS = lowers, nil
	err := mnt(o, target)
	if errors.Is(err, unix.EINVAL) && kernelBefore(5, 19) {
		// Before 5.19 overlay refuses any idmapped layer with EINVAL.
		return fmt.Errorf("%w (overlay over idmapped layers needs Linux 5.19)", err)
	}
	return err
}

// kernelBefore reports whether the running kernel is older than major.minor (false when
// its release cannot be read).
func kernelBefore(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var maj, min int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &min); err != nil {
		return false
	}
	return maj < major || (maj == major && min < minor)
}

func mountNewAPI(o Options, target string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for _, l := range o.Lowers {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			return fmt.Errorf("overlay lowerdir+ %s: %w", l, err)
		}
	}
	if o.Upper != "" {
		if err := unix.FsconfigSetString(fsfd, "upperdir", o.Upper); err != nil {
			return fmt.Errorf("overlay upperdir %s: %w", o.Upper, err)
		}
		if err := unix.FsconfigSetString(fsfd, "workdir", o.Work); err != nil {
			return fmt.Errorf("overlay workdir %s: %w", o.Work, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay of %d layers: %w", len(o.Lowers), err)
	}
	var attr int
	if o.ReadOnly {
		attr = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay mount to %s: %w", target, err)
	}
	return nil
}

// mountLegacy names every dir by a descriptor held open for the duration of mount(2).
func mountLegacy(o Options, target string) error {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	name := func(dir string) (string, error) {
		f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("open overlay dir: %w", err)
		}
		files = append(files, f)
		return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), nil
	}
	lowers := make([]string, 0, len(o.Lowers))
	for _, l := range o.Lowers {
		n, err := name(l)
		if err != nil {
			return err
		}
		lowers = append(lowers, n)
	}
	data := "lowerdir=" + strings.Join(lowers, ":")
	if o.Upper != "" {
		up, err := name(o.Upper)
		if err != nil {
			return err
		}
		work, err := name(o.Work)
		if err != nil {
			return err
		}
		data += ",upperdir=" + up + ",workdir=" + work
	}
	if len(data) >= maxMountData {
		return fmt.Errorf("overlay of %d layers: mount options of %d bytes exceed one page (this kernel lacks lowerdir+, Linux 6.8)", len(o.Lowers), len(data))
	}
	var flags uintptr
	if o.ReadOnly {
		flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	}
	if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
		return fmt.Errorf("mount overlay of %d layers on %s: %w", len(o.Lowers), target, err)
	}
	return nil
}
