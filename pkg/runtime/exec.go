package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/ns"
)

// ErrNotRunning is returned when exec targets a container whose init has exited.
var ErrNotRunning = errors.New("container is not running")

// Exec runs proc inside the running container (DESIGN section 5); see ExecIn. The
// container's init is our child, so its pidfd proves the namespace files belong to it.
func (c *Container) Exec(ctx context.Context, proc *specs.Process, stdio Stdio) (*Process, error) {
	select {
	case <-c.done:
		return nil, ErrNotRunning
	default:
	}
	spec, err := c.spec()
	if err != nil {
		return nil, fmt.Errorf("exec in container pid %d: %w", c.Pid, err)
	}
	alive := func() error { return c.Signal(0) }
	return execIn(ctx, c.Pid, c.cgroupPath, c.cgm, alive, proc, SpecSeccomp(spec), nil, stdio)
}

// ExecTarget is a running container as seen by a process that is not its parent (the
// daemon): the host PID of its init, its cgroup, and a time its init was known to exist.
type ExecTarget struct {
	Pid int
	// CgroupPath is the container's cgroup ("" when it has none); Cgroups manages it.
	CgroupPath string
	Cgroups    Cgroups
	// StartedBy is a time at which the init already existed (when it was started): a
	// process with this PID that began later is not the container's. Zero skips the check.
	StartedBy time.Time
	// Seccomp is the container's seccomp profile, which the exec'd process gets too.
	Seccomp *specs.LinuxSeccomp
	// Exe is a sealed copy of this binary (SealedExecutable) to start the exec helper from,
	// kept by the caller across execs; nil copies the binary for this exec alone.
	Exe *os.File
}

// ExecIn runs proc inside the running container t: the exec helper is started from a
// thread that joined the container's pid/net/ipc/uts namespaces; the helper joins the
// container's mount namespace on its own main thread (a Go process can only do that on a
// thread that gave up its shared fs_struct), is placed in the container's cgroup before it
// is released, switches to the process's user and working dir, and execs. ExecIn returns
// once the program runs (or failed to start); the caller waits for it like any Process.
//
// A PID seen in a record may have been recycled: the PID is pinned with a pidfd, shown to
// be in the container's cgroup, and the pidfd is checked again after the namespace files
// are open, so they belong to that process.
func ExecIn(ctx context.Context, t ExecTarget, proc *specs.Process, stdio Stdio) (*Process, error) {
	if t.Pid <= 0 {
		return nil, fmt.Errorf("exec: invalid container pid %d", t.Pid)
	}
	if (t.CgroupPath == "" || t.Cgroups == nil) && t.StartedBy.IsZero() {
		return nil, fmt.Errorf("exec in container pid %d: a cgroup or start time is needed to check the pid", t.Pid)
	}
	pidfd, err := unix.PidfdOpen(t.Pid, 0)
	if err != nil {
		return nil, fmt.Errorf("exec in container pid %d: %w: %w", t.Pid, ErrNotRunning, err)
	}
	defer unix.Close(pidfd)
	if t.CgroupPath != "" && t.Cgroups != nil {
		in, err := inCgroup(t.Pid, t.CgroupPath)
		if err != nil {
			return nil, fmt.Errorf("exec in container pid %d: %w", t.Pid, err)
		}
		if !in {
			return nil, fmt.Errorf("exec: pid %d is not in cgroup %s any more: %w", t.Pid, t.CgroupPath, ErrNotRunning)
		}
	}
	if !t.StartedBy.IsZero() {
		started, err := processStart(t.Pid)
		if err != nil {
			return nil, fmt.Errorf("exec in container pid %d: %w: %w", t.Pid, ErrNotRunning, err)
		}
		// btime has a one-second resolution: allow that much.
		if started.After(t.StartedBy.Add(time.Second)) {
			return nil, fmt.Errorf("exec: pid %d started at %v, after the container (%v): %w", t.Pid, started, t.StartedBy, ErrNotRunning)
		}
	}
	alive := func() error {
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
			return fmt.Errorf("signal pid %d: %w", t.Pid, err)
		}
		return nil
	}
	return execIn(ctx, t.Pid, t.CgroupPath, t.Cgroups, alive, proc, t.Seccomp, t.Exe, stdio)
}

// inCgroup reports whether pid is in cgroup path in some hierarchy, by /proc/<pid>/cgroup
// (whose paths are relative to our cgroup namespace's root, as cgroup paths here are).
func inCgroup(pid int, path string) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("read cgroups of pid %d: %w", pid, err)
	}
	want := filepath.Clean("/" + path)
	for _, line := range strings.Split(string(b), "\n") {
		// hierarchy-ID:controllers:path; the path itself may contain ':'.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && filepath.Clean(parts[2]) == want {
			return true, nil
		}
	}
	return false, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; Linux fixes it at 100 for
// user space on every architecture.
const clockTicks = 100

// processStart returns when pid started, from its start time in /proc/<pid>/stat (ticks
// since boot) and the boot time in /proc/stat.
func processStart(pid int) (time.Time, error) {
	ticks, err := startTicks(pid)
	if err != nil {
		return time.Time{}, err
	}
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, fmt.Errorf("read boot time: %w", err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("parse boot time %q: %w", v, err)
			}
			return time.Unix(boot, 0).Add(time.Duration(ticks) * time.Second / clockTicks), nil
		}
	}
	return time.Time{}, errors.New("no btime in /proc/stat")
}

// execIn opens the namespaces of pid, checks with alive that the process they were opened
// from is still the container's, and spawns the exec helper. The helper's thread joins the
// namespaces through the descriptors opened here (as /proc/self/fd paths), never by PID
// again, so a recycled PID cannot slip in between the check and the join.
func execIn(ctx context.Context, pid int, cgroupPath string, cgm Cgroups, alive func() error, proc *specs.Process, filter *specs.LinuxSeccomp, exe *os.File, stdio Stdio) (*Process, error) {
	if proc == nil || len(proc.Args) == 0 {
		return nil, fmt.Errorf("exec: empty process args")
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/ns/"
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	open := func(name string) (string, error) {
		f, err := os.Open(dir + name)
		if err != nil {
			return "", fmt.Errorf("exec: open container %s namespace: %w", name, err)
		}
		files = append(files, f)
		return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), nil
	}
	var paths ns.Paths
	for _, n := range []struct {
		name string
		dst  *string
	}{{"net", &paths.Net}, {"ipc", &paths.IPC}, {"uts", &paths.UTS}, {"pid", &paths.PID}} {
		p, err := open(n.name)
		if err != nil {
			return nil, err
		}
		*n.dst = p
	}
	mnt, err := os.Open(dir + "mnt")
	if err != nil {
		return nil, fmt.Errorf("exec: open container mount namespace: %w", err)
	}
	files = append(files, mnt)
	// A container in a pod's user namespace: the helper must run in it, or the process
	// would be host root inside the container.
	userns, err := open("user")
	if err != nil {
		return nil, err
	}
	if same, err := sameUserns(files[len(files)-1]); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	} else if same {
		userns = ""
	}
	if err := alive(); err != nil {
		return nil, fmt.Errorf("exec: %w: %w", ErrNotRunning, err)
	}
	p, err := spawn(ctx, spawnOptions{
		command:    ExecHelperCommand,
		ns:         paths,
		userns:     userns,
		stdio:      stdio,
		terminal:   proc.Terminal,
		extra:      []*os.File{mnt},
		exe:        exe,
		cgroupPath: cgroupPath,
		cgm:        cgm,
		config:     childConfig{Process: proc, Seccomp: filter},
	})
	if err != nil {
		return nil, fmt.Errorf("exec in container pid %d: %w", pid, err)
	}
	p.cgroupPath = "" // the container's cgroup belongs to the container
	defer func() {
		_ = p.sync.Close()
		p.sync = nil
	}()
	m, err := p.readMsg(ctx)
	switch {
	case errors.Is(err, errChildGone):
		klog.FromContext(ctx).V(4).Info("Exec started", "pid", p.Pid, "containerPid", pid)
		return p, nil
	case err == nil && m.Type == msgError:
		err = errors.New(m.Error)
	case err == nil:
		err = fmt.Errorf("unexpected %q message", m.Type)
	}
	p.kill()
	_, _ = p.Wait()
	return nil, fmt.Errorf("exec in container pid %d: %w", pid, err)
}

// ExecHelperMain is "cri-mini exec-helper", started by Exec. It must run on the main
// goroutine locked to the main thread (cmd/cri-mini's init() does it): the mount namespace
// join below applies to that thread only, and the final execve happens from it. It only
// returns on failure, with the exit code to use.
func ExecHelperMain() int {
	syncF := os.NewFile(fdSync, "sync")
	fail := func(err error) int {
		_ = writeMsg(syncF, message{Type: msgError, Error: err.Error()})
		return 126
	}
	cfg, err := readChildConfig()
	if err != nil {
		return fail(err)
	}
	if cfg.Process == nil || len(cfg.Process.Args) == 0 {
		return fail(errors.New("exec helper: no process"))
	}
	mnt := os.NewFile(fdMount, "mntns")
	if err := ns.EnterMountNSForExec(mnt); err != nil {
		return fail(err)
	}
	_ = mnt.Close()
	argv0, err := prepareProcess(cfg.Process, cfg.Seccomp)
	if err != nil {
		return fail(err)
	}
	return fail(execProcess(argv0, cfg.Process))
}

// ownUserns is this process's user namespace, which never changes: stat'ed once.
var ownUserns = sync.OnceValues(func() (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &st); err != nil {
		return st, fmt.Errorf("stat own user namespace: %w", err)
	}
	return st, nil
})

// sameUserns reports whether the user namespace open at f is this process's.
func sameUserns(f *os.File) (bool, error) {
	var theirs unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &theirs); err != nil {
		return false, fmt.Errorf("stat container user namespace: %w", err)
	}
	ours, err := ownUserns()
	if err != nil {
		return false, err
	}
	return theirs.Dev == ours.Dev && theirs.Ino == ours.Ino, nil
}
