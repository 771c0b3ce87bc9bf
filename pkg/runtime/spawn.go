package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/ns"
)

// Stdio are the container process's standard streams. With a terminal (spec
// process.terminal) all three are the pty's replica side, which becomes the controlling
// terminal. A nil stream is /dev/null.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// ExitStatus is how a process ended. Code follows the shell and CRI convention: the exit
// code, or 128+signal when a signal killed it.
type ExitStatus struct {
	Code   int
	Signal syscall.Signal // 0 unless killed by a signal
}

// Process is a spawned container init (Create) or exec'd process (Exec), a child of the
// calling process. Its methods are safe for concurrent use.
type Process struct {
	Pid int

	cmd  *exec.Cmd       // the child, unless it was started in a user namespace
	uc   *ns.UsernsChild // the child started in a user namespace (spawnOptions.userns)
	sync *os.File        // nil once the process runs its own program
	dec  *json.Decoder   // reads sync
	mu   sync.Mutex      // guards sync/dec (Start)
	once sync.Once       // one cmd.Wait
	exit ExitStatus      // valid after once
	werr error           // cmd.Wait's error other than a non-zero exit
	done chan struct{}   // closed when waited

	cgroupPath string
	cgm        Cgroups
}

// spawnOptions describe one child of the binary ("init" or "exec-helper").
type spawnOptions struct {
	command    string
	ns         ns.Paths
	cloneflags uintptr
	// userns is the user namespace the child joins (a pod's), "" for ours. The namespaces
	// of cloneflags are then created inside it.
	userns   string
	stdio    Stdio
	terminal bool
	extra    []*os.File // passed after fdExe
	// exe is a sealed copy of this binary to start (SealedExecutable), owned by the caller;
	// nil makes or reopens one for this spawn (sealedSelf).
	exe        *os.File
	cgroupPath string
	cgm        Cgroups
	config     childConfig
	// rawConfig, when set, is sent instead of config: the config already in JSON.
	rawConfig []byte
}

// spawn starts a sealed copy of this binary with the given subcommand from a thread in the
// target namespaces, places it in its cgroup, then releases it by sending its config: the
// child blocks reading the config, so it runs nothing before it is in its cgroup.
func spawn(ctx context.Context, o spawnOptions) (_ *Process, retErr error) {
	exe := o.exe
	if exe == nil {
		self, err := sealedSelf()
		if err != nil {
			return nil, err
		}
		defer self.Close()
		exe = self
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create config pipe: %w", err)
	}
	defer cfgR.Close()
	defer cfgW.Close()
	syncP, syncC, err := syncPair()
	if err != nil {
		return nil, err
	}
	defer syncC.Close()
	defer func() {
		if retErr != nil {
			_ = syncP.Close()
		}
	}()
	p := &Process{sync: syncP, dec: json.NewDecoder(syncP), done: make(chan struct{}),
		cgroupPath: o.cgroupPath, cgm: o.cgm}
	if err := p.start(o, []*os.File{cfgR, syncC, exe}); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			p.kill()
			_, _ = p.Wait()
		}
	}()
	// The parent's copies of the child's ends must go, or EOF never arrives when it dies.
	_ = cfgR.Close()
	_ = syncC.Close()
	if o.cgroupPath != "" && !o.cgm.IsV2() {
		// cgroup v1 (no clone-into-cgroup): move it while it is still blocked on its config.
		if err := joinCgroupV1(o.cgm, o.cgroupPath, p.Pid); err != nil {
			return nil, err
		}
	}
	if err := sendConfig(cfgW, o); err != nil {
		return nil, fmt.Errorf("send config to %s: %w", o.command, err)
	}
	_ = cfgW.Close()
	klog.FromContext(ctx).V(4).Info("Spawned child", "command", o.command, "pid", p.Pid)
	return p, nil
}

// start starts the child: through exec.Cmd, or by ns.StartInUserns when it must join a
// user namespace (Go's fork path cannot join one).
func (p *Process) start(o spawnOptions, files []*os.File) error {
	if o.userns != "" {
		uc, err := startInUserns(o, files)
		if err != nil {
			return fmt.Errorf("start %s: %w", o.command, err)
		}
		p.uc, p.Pid = uc, uc.Pid
		return nil
	}
	cmd, cgfd, err := childCmd(o, files)
	if cgfd != nil {
		defer cgfd.Close()
	}
	if err != nil {
		return err
	}
	if err := ns.StartIn(o.ns, cmd); err != nil {
		return fmt.Errorf("start %s: %w", o.command, err)
	}
	p.cmd, p.Pid = cmd, cmd.Process.Pid
	return nil
}

// startInUserns is childCmd and ns.StartIn for a child that joins o.userns.
func startInUserns(o spawnOptions, files []*os.File) (*ns.UsernsChild, error) {
	s := ns.UsernsSpawn{
		Path:   "/proc/self/fd/" + strconv.Itoa(fdExe),
		Args:   []string{"cri-mini", o.command},
		Env:    []string{},
		Userns: o.userns, Cloneflags: o.cloneflags,
		Setsid: true, Setctty: o.terminal,
	}
	stdio := [3]*os.File{o.stdio.Stdin, o.stdio.Stdout, o.stdio.Stderr}
	return startUserns(o.ns, s, stdio, append(files, o.extra...), o.cgm, o.cgroupPath)
}

// startUserns completes s for ns.StartInUserns: nil stdio is /dev/null (as exec.Cmd has
// it), files follow stdio, and on cgroup v2 the child starts in cgroupPath.
func startUserns(p ns.Paths, s ns.UsernsSpawn, stdio [3]*os.File, files []*os.File, cgm Cgroups, cgroupPath string) (*ns.UsernsChild, error) {
	for i, f := range stdio {
		if f != nil {
			continue
		}
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return nil, fmt.Errorf("open %s for stdio: %w", os.DevNull, err)
		}
		defer devnull.Close()
		stdio[i] = devnull
	}
	s.Files = append(stdio[:], files...)
	s.CgroupFD = -1
	if cgroupPath != "" && cgm.IsV2() {
		f, err := cgroupDir(cgm, cgroupPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		s.CgroupFD = int(f.Fd())
	}
	return ns.StartInUserns(p, s)
}

// kill sends SIGKILL to the child.
func (p *Process) kill() {
	if p.uc != nil {
		_ = p.uc.Signal(unix.SIGKILL)
		return
	}
	_ = p.cmd.Process.Kill()
}

func sendConfig(w *os.File, o spawnOptions) error {
	if o.rawConfig != nil {
		_, err := w.Write(o.rawConfig)
		return err
	}
	return json.NewEncoder(w).Encode(o.config)
}

// childCmd builds the exec.Cmd. On cgroup v2 it also returns the open cgroup directory for
// clone3(CLONE_INTO_CGROUP), which the caller closes after the start.
func childCmd(o spawnOptions, files []*os.File) (*exec.Cmd, *os.File, error) {
	// Execute the sealed copy through this process's descriptor table as the child will
	// see it after exec.Cmd has dup'ed the extra files to 3, 4, 5...
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/" + strconv.Itoa(fdExe),
		Args:       []string{"cri-mini", o.command},
		Env:        []string{},
		Stdin:      o.stdio.Stdin,
		Stdout:     o.stdio.Stdout,
		Stderr:     o.stdio.Stderr,
		ExtraFiles: append(files, o.extra...),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: o.cloneflags,
			// A session of its own: the container's signals and terminal are not ours.
			Setsid:  true,
			Setctty: o.terminal,
			Ctty:    0,
		},
	}
	if o.cgroupPath == "" {
		return cmd, nil, nil
	}
	f, err := intoCgroup(cmd, o.cgm, o.cgroupPath)
	return cmd, f, err
}

// intoCgroup makes cmd's child start in cgroup p on cgroup v2 (clone3 CLONE_INTO_CGROUP),
// so it runs nothing outside it. It returns the cgroup's directory, which the caller keeps
// open until the child is started; nil on v1, where the caller moves the child itself.
func intoCgroup(cmd *exec.Cmd, cgm Cgroups, p string) (*os.File, error) {
	if !cgm.IsV2() {
		return nil, nil
	}
	f, err := cgroupDir(cgm, p)
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return f, nil
}

// cgroupDir opens the cgroup v2 directory of p for clone3(CLONE_INTO_CGROUP).
func cgroupDir(cgm Cgroups, p string) (*os.File, error) {
	dirs, err := cgm.Dirs(p)
	if err != nil {
		return nil, err
	}
	dir, ok := dirs[""]
	if !ok {
		return nil, fmt.Errorf("cgroup %s has no unified directory", p)
	}
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	return f, nil
}

// readMsg reads the child's next sync message. If ctx ends first the child is killed (a
// child stuck in its setup, on a hung mount say, must not hold the caller forever) and the
// error wraps ctx's.
func (p *Process) readMsg(ctx context.Context) (message, error) {
	type result struct {
		m   message
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := readMsg(p.dec)
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		p.kill()
		<-ch
		return message{}, ctx.Err()
	}
}

// waitReady waits for the child's ready message, killing the child if ctx ends first.
func (p *Process) waitReady(ctx context.Context) error {
	m, err := p.readMsg(ctx)
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return fmt.Errorf("wait for container init: %w", err)
	case errors.Is(err, errChildGone):
		st, _ := p.Wait()
		return fmt.Errorf("container init exited during setup (code %d, signal %d)", st.Code, st.Signal)
	case err != nil:
		return err
	case m.Type == msgError:
		return fmt.Errorf("container init: %s", m.Error)
	case m.Type != msgReady:
		return fmt.Errorf("container init sent %q instead of ready", m.Type)
	}
	return nil
}

// Wait waits for the process to end and returns how it ended. Every caller gets the same
// result; the first one reaps the process.
func (p *Process) Wait() (ExitStatus, error) {
	p.once.Do(func() {
		defer close(p.done)
		if p.uc != nil {
			p.waitUserns()
			return
		}
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			p.werr = fmt.Errorf("wait for pid %d: %w", p.Pid, err)
		}
		// No state when another waiter reaped it first (ECHILD): the monitor reaps every
		// child with wait4(-1), and a failed create's Wait can lose that race.
		if p.cmd.ProcessState == nil {
			return
		}
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			p.exit = exitStatus(ws)
		}
	})
	return p.exit, p.werr
}

// waitUserns is Wait's body for a child started in a user namespace.
func (p *Process) waitUserns() {
	defer p.uc.Release()
	ws, err := p.uc.Wait()
	if errors.Is(err, unix.ECHILD) {
		return // reaped by the monitor's wait4(-1), as for cmd.Wait
	}
	if err != nil {
		p.werr = err
		return
	}
	p.exit = exitStatus(ws)
}

func exitStatus(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

// Exited is closed once Wait has reaped the process.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Signal sends sig to the process. It uses the process's pidfd, so a recycled PID can never
// receive it; signalling a process that has ended returns os.ErrProcessDone.
func (p *Process) Signal(sig syscall.Signal) error {
	signal := func() error { return p.cmd.Process.Signal(sig) }
	if p.uc != nil {
		signal = func() error { return p.uc.Signal(sig) }
	}
	if err := signal(); err != nil {
		return fmt.Errorf("signal pid %d with %v: %w", p.Pid, sig, err)
	}
	return nil
}

// Spec-derived spawn parameters shared by Create: the namespaces to join, the ones to
// create, and the user namespace to join ("" for ours).
func specNamespaces(nss []specs.LinuxNamespace) (ns.Paths, uintptr, string, error) {
	var paths ns.Paths
	var flags uintptr
	var userns string
	for _, n := range nss {
		switch n.Type {
		case specs.UserNamespace:
			if n.Path == "" {
				return paths, 0, "", fmt.Errorf("a new user namespace per container is not supported: join the pod's")
			}
			userns = n.Path
		case specs.NetworkNamespace:
			paths.Net = n.Path
		case specs.IPCNamespace:
			paths.IPC = n.Path
		case specs.UTSNamespace:
			paths.UTS = n.Path
		case specs.PIDNamespace:
			paths.PID = n.Path
			if n.Path == "" {
				flags |= unix.CLONE_NEWPID
			}
		case specs.MountNamespace:
			if n.Path != "" {
				return paths, 0, "", fmt.Errorf("joining an existing mount namespace is not supported")
			}
			flags |= unix.CLONE_NEWNS
		case specs.CgroupNamespace:
			flags |= unix.CLONE_NEWCGROUP
		default:
			return paths, 0, "", fmt.Errorf("namespace %q is not supported", n.Type)
		}
		if n.Path == "" && (n.Type == specs.NetworkNamespace || n.Type == specs.IPCNamespace || n.Type == specs.UTSNamespace) {
			return paths, 0, "", fmt.Errorf("a new %s namespace per container is not supported: join the pod's", n.Type)
		}
	}
	if flags&unix.CLONE_NEWNS == 0 {
		return paths, 0, "", fmt.Errorf("the spec must ask for a new mount namespace")
	}
	return paths, flags, userns, nil
}

// joinCgroupV1 writes pid to cgroup.procs in every hierarchy where the cgroup exists.
// cgroups.Manager.Create skips hierarchies it sets nothing in (devices), and AddProcess
// would fail on those; a hierarchy without the cgroup keeps the process in its parent's.
func joinCgroupV1(cgm Cgroups, path string, pid int) error {
	dirs, err := cgm.Dirs(path)
	if err != nil {
		return err
	}
	joined := 0
	for _, dir := range dirs {
		err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, dir, err)
		}
		joined++
	}
	if joined == 0 {
		return fmt.Errorf("add pid %d to cgroup %s: it exists in no hierarchy", pid, path)
	}
	return nil
}
