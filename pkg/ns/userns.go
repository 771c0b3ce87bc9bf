package ns

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// HoldCommand is the hidden subcommand (of cri-mini and cri-mini-monitor) that Pin runs to
// create a pod's user namespace: it holds its namespaces until its stdin closes (HoldMain).
const HoldCommand = "ns-hold"

// IDMap is one line of a uid_map or gid_map: Size IDs from ContainerID on, inside the user
// namespace, are HostID on outside it.
type IDMap struct {
	ContainerID uint32
	HostID      uint32
	Size        uint32
}

// UserOptions asks Pin for a new user namespace that owns the other new namespaces.
type UserOptions struct {
	UIDMappings []IDMap
	GIDMappings []IDMap
	// Holder is an executable with the HoldCommand subcommand, best a sealed copy of the
	// binary (the runtime package's SealedBinary); nil runs this process's own binary. The
	// caller keeps it open.
	Holder *os.File
}

// HoldMain is the HoldCommand: it returns once its stdin reaches end of file. Its starter
// keeps the write end and closes it (or dies, and the kernel closes it): whatever happens
// to the starter, the holder never outlives it.
func HoldMain() int {
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// fdHolderExe is where the holder's binary sits in the holder (exec.Cmd.ExtraFiles[0]).
const fdHolderExe = 3

// pinWithUser creates the user namespace and the namespaces of o.Kinds together, owned by
// it, and pins them all. A multithreaded Go process can neither unshare nor join a user
// namespace (DESIGN.md section 5), but it can clone a child into new ones: the child gets
// CLONE_NEWUSER with the other flags in one clone(2), so the kernel makes the new user
// namespace the owner of the others, and exec.Cmd writes the ID maps before the child runs.
// The parent pins /proc/<child>/ns/*, configures the namespaces from a thread that joined
// them (root of the host has every capability in a descendant user namespace) and ends the
// child. On error nothing is left pinned or running.
func pinWithUser(o PinOptions, flags int) (_ Pins, retErr error) {
	h, err := startHolder(o.User, flags|unix.CLONE_NEWUSER)
	if err != nil {
		return nil, err
	}
	defer h.stop()
	pins := Pins{}
	defer func() {
		if retErr != nil {
			unpinAll(pins)
		}
	}()
	for _, k := range append([]Kind{User}, o.Kinds...) {
		dst := filepath.Join(o.Dir, string(k))
		src := "/proc/" + strconv.Itoa(h.cmd.Process.Pid) + "/ns/" + string(k)
		if err := bindNS(src, k, dst); err != nil {
			return nil, fmt.Errorf("pin %s namespace of the user namespace holder: %w", k, err)
		}
		pins[k] = dst
	}
	// Joined from the pins, not from the holder's /proc entries: the holder cannot exit
	// (or be replaced by a recycled PID) between opening and joining.
	p := Paths{Net: pins[Net], IPC: pins[IPC], UTS: pins[UTS]}
	if err := Do(p, func() error { return configure(o) }); err != nil {
		return nil, err
	}
	return pins, nil
}

// holder is the child that holds freshly cloned namespaces until they are pinned.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHolder clones the holder with flags and the ID maps of u. When Start returns, the
// child has exec'd, so its namespaces exist and its maps are written.
func startHolder(u *UserOptions, flags int) (*holder, error) {
	exe := u.Holder
	if exe == nil {
		self, err := os.Open("/proc/self/exe")
		if err != nil {
			return nil, fmt.Errorf("open own binary for the user namespace holder: %w", err)
		}
		defer self.Close()
		exe = self
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/" + strconv.Itoa(fdHolderExe),
		Args:       []string{"cri-mini", HoldCommand},
		Env:        []string{},
		ExtraFiles: []*os.File{exe},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  uintptr(flags),
			UidMappings: sysIDMaps(u.UIDMappings),
			GidMappings: sysIDMaps(u.GIDMappings),
			// Containers of the pod call setgroups(2) (supplementary groups of the image
			// user); "deny" in /proc/<pid>/setgroups would forbid it for the namespace's life.
			GidMappingsEnableSetgroups: true,
		},
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("create stdin of the user namespace holder: %w", err)
	}
	if err := cmd.Start(); err != nil {
		_ = stdin.Close()
		return nil, fmt.Errorf("start user namespace holder: %w", err)
	}
	return &holder{cmd: cmd, stdin: stdin}, nil
}

// stop ends and reaps the holder: its namespaces are pinned (or given up) by now.
func (h *holder) stop() {
	_ = h.stdin.Close()
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

func sysIDMaps(m []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, 0, len(m))
	for _, x := range m {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(x.ContainerID), HostID: int(x.HostID), Size: int(x.Size)})
	}
	return out
}

// OwnedBy reports whether the namespace pinned at path is owned by the user namespace pinned
// at userPath (NS_GET_USERNS).
func OwnedBy(path, userPath string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		return false, fmt.Errorf("get owning user namespace of %s: %w", path, err)
	}
	defer unix.Close(fd)
	var owner, want unix.Stat_t
	if err := unix.Fstat(fd, &owner); err != nil {
		return false, fmt.Errorf("stat owning user namespace of %s: %w", path, err)
	}
	if err := unix.Stat(userPath, &want); err != nil {
		return false, fmt.Errorf("stat user namespace %s: %w", userPath, err)
	}
	return owner.Ino == want.Ino && owner.Dev == want.Dev, nil
}

// writeSysctlsInUserNS writes sysctls into namespaces owned by the user namespace of u, from
// the calling thread, which joined them and is thrown away afterwards. The kernel makes the
// IPC and mqueue sysctls of such an IPC namespace writable by the namespace's root only
// (ipc_permissions, mq_permissions compare the euid with the mapping of uid 0, capabilities
// do not count), while host root may write the others. So the IPC ones go last, after this
// thread alone switched its effective IDs to the namespace root's: a raw setresuid changes
// one thread, where syscall.Setresuid would change every thread of the process.
func writeSysctlsInUserNS(sysctls map[string]string, u *UserOptions) error {
	host, ipc := map[string]string{}, map[string]string{}
	for name, v := range sysctls {
		if k, _ := SysctlKind(name); k == IPC {
			ipc[name] = v
		} else {
			host[name] = v
		}
	}
	if err := writeSysctls(host); err != nil {
		return err
	}
	if len(ipc) == 0 {
		return nil
	}
	uid, uok := HostID(u.UIDMappings, 0)
	gid, gok := HostID(u.GIDMappings, 0)
	if !uok || !gok {
		return fmt.Errorf("write IPC sysctls: the user namespace does not map root")
	}
	const keep = ^uintptr(0) // -1: leave that ID as it is
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(gid), keep); e != 0 {
		return fmt.Errorf("switch thread to gid %d to write IPC sysctls: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(uid), keep); e != 0 {
		return fmt.Errorf("switch thread to uid %d to write IPC sysctls: %w", uid, e)
	}
	return writeSysctls(ipc)
}

// HostID returns the ID outside the user namespace of id inside it, by the mappings m, and
// false when m does not map it.
func HostID(m []IDMap, id uint32) (uint32, bool) {
	for _, x := range m {
		if id >= x.ContainerID && uint64(id) < uint64(x.ContainerID)+uint64(x.Size) {
			return x.HostID + (id - x.ContainerID), true
		}
	}
	return 0, false
}

// WithUserNamespace runs fn with the path of a new user namespace mapping u's IDs, held by
// a child for fn's duration (for probes of what the kernel allows with one).
func WithUserNamespace(u *UserOptions, fn func(path string) error) error {
	h, err := startHolder(u, unix.CLONE_NEWUSER)
	if err != nil {
		return err
	}
	defer h.stop()
	return fn("/proc/" + strconv.Itoa(h.cmd.Process.Pid) + "/ns/user")
}
