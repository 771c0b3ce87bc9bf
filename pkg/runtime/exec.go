package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/ns"
)

// ErrNotRunning is returned when exec targets a container whose init has exited.
var ErrNotRunning = errors.New("container is not running")

// Exec runs proc inside the running container (DESIGN section 5): the exec helper is
// started from a thread that joined the container's pid/net/ipc/uts namespaces; the helper
// joins the container's mount namespace on its own main thread (a Go process can only do
// that on a thread that gave up its shared fs_struct), is placed in the container's cgroup
// before it is released, switches to the process's user and working dir, and execs. Exec
// returns once the program runs (or failed to start). The caller waits for it like any
// Process.
func (c *Container) Exec(ctx context.Context, proc *specs.Process, stdio Stdio) (*Process, error) {
	if proc == nil || len(proc.Args) == 0 {
		return nil, fmt.Errorf("exec: empty process args")
	}
	select {
	case <-c.done:
		return nil, ErrNotRunning
	default:
	}
	dir := "/proc/" + strconv.Itoa(c.Pid) + "/ns/"
	mnt, err := os.Open(dir + "mnt")
	if err != nil {
		return nil, fmt.Errorf("exec: open container mount namespace: %w", err)
	}
	defer mnt.Close()
	// The pidfd check after the open proves the namespace files belong to our init and not
	// to a process that recycled its PID.
	if err := c.Signal(0); err != nil {
		return nil, fmt.Errorf("exec: %w: %w", ErrNotRunning, err)
	}
	p, err := spawn(ctx, spawnOptions{
		command:    ExecHelperCommand,
		ns:         ns.Paths{Net: dir + "net", IPC: dir + "ipc", UTS: dir + "uts", PID: dir + "pid"},
		stdio:      stdio,
		terminal:   proc.Terminal,
		extra:      []*os.File{mnt},
		cgroupPath: c.cgroupPath,
		cgm:        c.cgm,
		config:     childConfig{Process: proc},
	})
	if err != nil {
		return nil, fmt.Errorf("exec in container pid %d: %w", c.Pid, err)
	}
	p.cgroupPath = "" // the container's cgroup belongs to the container
	defer func() {
		_ = p.sync.Close()
		p.sync = nil
	}()
	m, err := readMsg(p.dec)
	switch {
	case errors.Is(err, errChildGone):
		klog.FromContext(ctx).V(4).Info("Exec started", "pid", p.Pid, "containerPid", c.Pid)
		return p, nil
	case err == nil && m.Type == msgError:
		err = errors.New(m.Error)
	case err == nil:
		err = fmt.Errorf("unexpected %q message", m.Type)
	}
	_ = p.cmd.Process.Kill()
	_, _ = p.Wait()
	return nil, fmt.Errorf("exec in container pid %d: %w", c.Pid, err)
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
	argv0, err := prepareProcess(cfg.Process)
	if err != nil {
		return fail(err)
	}
	return fail(execProcess(argv0, cfg.Process))
}
