// Package ns is the only package of cri-mini that calls setns, unshare or LockOSThread.
//
// Linux namespaces are a property of a thread, and the Go runtime moves goroutines between
// threads freely. Every function here therefore does its namespace work on a fresh goroutine
// locked to its thread, and that goroutine ends WITHOUT unlocking: the runtime then destroys
// the thread instead of handing a thread that lives in a pod's namespaces to unrelated code.
// The caller's main goroutine must be locked to the main thread (cmd/cri-mini's init does it):
// otherwise a throw-away goroutine could land on the main thread, which the runtime never
// destroys, and the whole daemon would drift into a pod's network namespace.
package ns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Kind names one namespace type that a sandbox may pin.
type Kind string

// The namespace kinds a pod sandbox pins. Mount and PID namespaces are not pinned here: they
// belong to containers. A user namespace is pinned only when PinOptions.User asks for one,
// and is created by a child process (see userns.go): a multithreaded Go process can neither
// unshare nor join one (StartInUserns starts a child inside one).
const (
	Net  Kind = "net"
	IPC  Kind = "ipc"
	UTS  Kind = "uts"
	User Kind = "user"
)

func (k Kind) cloneFlag() int {
	switch k {
	case Net:
		return unix.CLONE_NEWNET
	case IPC:
		return unix.CLONE_NEWIPC
	case UTS:
		return unix.CLONE_NEWUTS
	}
	return 0
}

// PinOptions describes the namespaces to create for a pod sandbox.
type PinOptions struct {
	// Dir receives one bind-mounted file per pinned namespace, named after its kind.
	Dir string
	// Kinds lists the namespaces to create; a kind left out stays the host's.
	Kinds []Kind
	// Hostname is set in the new UTS namespace (ignored without UTS).
	Hostname string
	// Sysctls are written inside the new namespaces. Every key must belong to a namespace
	// listed in Kinds (see CheckSysctls): the caller validates first, Pin checks again so
	// that a host value can never be changed by mistake.
	Sysctls map[string]string
	// User, when set, puts the new namespaces under a new user namespace with the given ID
	// mappings, which is pinned too (kind User).
	User *UserOptions
}

// Pins maps each pinned kind to the path of its bind-mounted namespace file.
type Pins map[Kind]string

// Pin creates new namespaces on a throw-away locked thread, configures them (loopback up,
// hostname, sysctls) and pins each one by bind-mounting /proc/thread-self/ns/<kind> onto a
// file under o.Dir, so that the namespaces outlive the thread. With o.User the namespaces
// are created by a short-lived child instead (see pinWithUser). On error nothing is left
// pinned.
func Pin(o PinOptions) (Pins, error) {
	if len(o.Kinds) == 0 && o.User == nil {
		return Pins{}, nil
	}
	if err := CheckSysctls(o.Sysctls, o.Kinds); err != nil {
		return nil, err
	}
	flags, err := cloneFlags(o.Kinds)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create namespace pin dir %s: %w", o.Dir, err)
	}
	if o.User != nil {
		return pinWithUser(o, flags)
	}
	type result struct {
		pins Pins
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// No UnlockOSThread: after unshare this thread lives in the pod's namespaces and
		// must die with the goroutine.
		runtime.LockOSThread()
		pins, err := pinOnThread(o, flags)
		ch <- result{pins, err}
	}()
	r := <-ch
	return r.pins, r.err
}

// cloneFlags combines the clone flags of kinds; User is not one of them (PinOptions.User
// asks for it).
func cloneFlags(kinds []Kind) (int, error) {
	flags := 0
	for _, k := range kinds {
		f := k.cloneFlag()
		if f == 0 {
			return 0, fmt.Errorf("pin namespace: unsupported kind %q", k)
		}
		flags |= f
	}
	return flags, nil
}

func pinOnThread(o PinOptions, flags int) (_ Pins, retErr error) {
	if err := unix.Unshare(flags); err != nil {
		return nil, fmt.Errorf("unshare namespaces %v: %w", o.Kinds, err)
	}
	if err := configure(o); err != nil {
		return nil, err
	}
	pins := Pins{}
	defer func() {
		if retErr != nil {
			unpinAll(pins)
		}
	}()
	for _, k := range o.Kinds {
		dst := filepath.Join(o.Dir, string(k))
		if err := bindNS("/proc/thread-self/ns/"+string(k), k, dst); err != nil {
			return nil, err
		}
		pins[k] = dst
	}
	return pins, nil
}

// configure sets up the namespaces of the calling thread that o created: loopback up,
// hostname, sysctls.
func configure(o PinOptions) error {
	has := func(k Kind) bool {
		for _, x := range o.Kinds {
			if x == k {
				return true
			}
		}
		return false
	}
	if has(Net) {
		// A new network namespace starts with lo down; pods expect 127.0.0.1 to work even
		// when the CNI config has no loopback plugin.
		if err := setLinkUp("lo"); err != nil {
			return fmt.Errorf("bring up lo in the pod network namespace: %w", err)
		}
	}
	if has(UTS) && o.Hostname != "" {
		if err := unix.Sethostname([]byte(o.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", o.Hostname, err)
		}
	}
	// /proc/sys resolves net, ipc and uts entries against the namespaces of the thread that
	// opens the file, so these writes land in the namespaces created above.
	if o.User == nil {
		return writeSysctls(o.Sysctls)
	}
	return writeSysctlsInUserNS(o.Sysctls, o.User)
}

func unpinAll(pins Pins) {
	for _, p := range pins {
		_ = Unpin(p)
	}
}

// bindNS pins the namespace file src (of kind k) by bind-mounting it onto a new file dst.
func bindNS(src string, k Kind, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create namespace pin %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("close namespace pin %s: %w", dst, err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("bind %s namespace onto %s: %w", k, dst, err)
	}
	return nil
}

// Unpin releases a pinned namespace: lazy unmount (a CNI plugin or a container may still
// hold it open; the kernel frees the namespace with its last user) and removal of the file.
// Unpinning something already gone is not an error, so cleanup can be retried.
func Unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace pin %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace pin %s: %w", path, err)
	}
	return nil
}

// IsPinned reports whether path is a live namespace pin (a bind mount of an nsfs inode).
// After a reboot the file may survive on a persistent disk, but it is then a plain file.
func IsPinned(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Paths selects namespace files to join; an empty path keeps the caller's namespace.
// PID sets the namespace of the thread's future children only (setns(CLONE_NEWPID) never
// moves the caller itself): it matters for a process started from fn.
type Paths struct {
	Net, IPC, UTS, PID string
}

// Do runs fn on a throw-away locked thread that has joined the given namespaces. fn must not
// start goroutines that expect to stay in them. All namespace files are opened before any
// is joined, so a relative path or /proc/self cannot be resolved in the wrong place.
func Do(p Paths, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the thread is in foreign namespaces and must die with us.
		runtime.LockOSThread()
		ch <- doOnThread(p, fn)
	}()
	return <-ch
}

func doOnThread(p Paths, fn func() error) error {
	type target struct {
		path string
		flag int
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	var flags []int
	for _, t := range []target{{p.Net, unix.CLONE_NEWNET}, {p.IPC, unix.CLONE_NEWIPC}, {p.UTS, unix.CLONE_NEWUTS}, {p.PID, unix.CLONE_NEWPID}} {
		if t.path == "" {
			continue
		}
		fd, err := unix.Open(t.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open namespace %s: %w", t.path, err)
		}
		fds = append(fds, fd)
		flags = append(flags, t.flag)
	}
	for i, fd := range fds {
		if err := unix.Setns(fd, flags[i]); err != nil {
			return fmt.Errorf("join namespace (flag %#x): %w", flags[i], err)
		}
	}
	return fn()
}
