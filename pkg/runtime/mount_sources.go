package runtime

import (
	"fmt"
	"os"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idmap"
)

// fdMountSources is the first descriptor of an init's bind sources (mountSources): they
// follow fdExe.
const fdMountSources = fdExe + 1

// mountSources opens the source of every bind mount of a container that runs in a user
// namespace, as a detached copy of the mount tree (open_tree(OPEN_TREE_CLONE)).
//
// The init runs as root of the pod's user namespace, which is no one on the host: it may
// not reach a source under a directory closed to others (a kubelet pod dir is 0750, a
// sandbox's is 0700). Opened here, by the spawning process, each source reaches the init
// as a descriptor, and move_mount(2) attaches it in the container's mount namespace (a
// plain bind of a descriptor opened outside that namespace is refused: do_loopback's
// check_mnt). It returns the files, to pass from fdMountSources on, and for each the index
// of its mount in the spec.
//
// A mount with the idmap option is idmapped into the user namespace at userns.
func mountSources(mounts []specs.Mount, userns string) (files []*os.File, index map[int]int, retErr error) {
	defer func() {
		if retErr != nil {
			closeFiles(files)
			files = nil
		}
	}()
	var ns *os.File
	defer func() {
		if ns != nil {
			_ = ns.Close()
		}
	}()
	for i, m := range mounts {
		flags, _, _ := parseMountOptions(m.Options)
		if !isBind(m.Type, flags) {
			continue
		}
		recursive := flags&unix.MS_REC != 0
		var f *os.File
		var err error
		if slices.Contains(m.Options, optIDMap) {
			if ns == nil {
				if ns, err = idmap.OpenUserNS(userns); err != nil {
					return nil, nil, fmt.Errorf("mount %s: %w", m.Destination, err)
				}
			}
			f, err = idmap.CloneIdmapped(m.Source, ns, recursive)
		} else {
			f, err = idmap.Clone(m.Source, recursive)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		if index == nil {
			index = map[int]int{}
		}
		index[i] = fdMountSources + len(files)
		files = append(files, f)
	}
	return files, index, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// withMountSources adds the init's descriptor of each mount source to a JSON child config
// (CreateJSON's, which ends with "}\n").
func withMountSources(raw []byte, index map[int]int) []byte {
	if len(index) == 0 {
		return raw
	}
	out := append([]byte{}, raw[:len(raw)-2]...)
	out = append(out, `,"mountSources":{`...)
	first := true
	for i, fd := range index {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, '"')
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, `":`...)
		out = strconv.AppendInt(out, int64(fd), 10)
	}
	return append(out, "}}\n"...)
}

// attachSource moves the detached source of a bind (mountSources) onto target, the handle
// of its mount point in the rootfs.
func attachSource(fd int, target *os.File, m specs.Mount) error {
	if err := unix.MoveMount(fd, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s on %s: attach the source: %w", m.Source, m.Destination, err)
	}
	return nil
}

// sourceIsDir tells whether a bind's source is a directory: through its descriptor when
// the parent opened it, else by path.
func sourceIsDir(fd int, m specs.Mount) (bool, error) {
	var st unix.Stat_t
	var err error
	if fd >= 0 {
		err = unix.Fstat(fd, &st)
	} else {
		err = unix.Stat(m.Source, &st)
	}
	if err != nil {
		return false, fmt.Errorf("mount %s: source %s: %w", m.Destination, m.Source, err)
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// isBind tells a bind mount, the way the init treats it (mountOne): the parent opens a
// source for exactly those.
func isBind(typ string, flags uintptr) bool { return typ == "bind" || flags&unix.MS_BIND != 0 }
