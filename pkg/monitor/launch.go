package monitor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/childreap"
)

// CgroupPlacer moves a process into a cgroup; *cgroups.Manager of pkg/cgroups is one.
type CgroupPlacer interface {
	AddProcess(path string, pid int) error
}

// LaunchOptions describe a monitor to start for a pod.
type LaunchOptions struct {
	// Exe is the binary to run; empty means this executable.
	Exe string
	// ExeFile, when set, is run instead of Exe: a sealed copy of this binary
	// (runtime.SealedExecutable). The monitor then runs from that copy and spawns the
	// containers' processes from it without a copy of its own (CVE-2019-5736).
	ExeFile *os.File
	// Args come before the monitor flags; empty means ["monitor"] (the hidden subcommand).
	Args  []string
	PodID string
	// Dir is the monitor's state directory (socket, exit records); created 0700.
	Dir string
	// LogFile receives the monitor's own stderr; empty means /dev/null.
	LogFile string
	// Cgroup, when set, is the cgroup the monitor is moved into right after it starts (the
	// pod's, or a cri-mini-monitors one), so that it is not in the daemon's: a restart of
	// the daemon's service kills everything in the daemon's cgroup. The caller creates it.
	Cgroup  string
	Cgroups CgroupPlacer
	// Env of the monitor; nil means the daemon's environment.
	Env []string
}

// Launch starts a pod's monitor and returns its pid once it serves on its socket (or ctx
// ends). The monitor runs in its own session (Setsid) so that no terminal or process-group
// signal aimed at the daemon reaches it, and without Pdeathsig: it must outlive the daemon.
// The daemon reaps it (childreap) if it exits while the daemon lives; after a daemon
// restart the kernel reparents it away.
func Launch(ctx context.Context, opts LaunchOptions) (pid int, retErr error) {
	cmd, cleanup, ready, err := prepareLaunch(opts)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	if err := cmd.Start(); err != nil {
		_ = ready.Close()
		return 0, fmt.Errorf("start monitor for pod %s: %w", opts.PodID, err)
	}
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	defer ready.Close()
	// Our copy of the write end must go, or a monitor that dies early never gives us EOF.
	_ = cmd.ExtraFiles[0].Close()
	if opts.Cgroup != "" && opts.Cgroups != nil {
		if err := opts.Cgroups.AddProcess(opts.Cgroup, cmd.Process.Pid); err != nil {
			return 0, fmt.Errorf("move monitor of pod %s to cgroup %s: %w", opts.PodID, opts.Cgroup, err)
		}
	}
	if err := waitReady(ctx, ready); err != nil {
		return 0, fmt.Errorf("monitor of pod %s (see %s): %w", opts.PodID, opts.logName(), err)
	}
	// Reaped through a pidfd, not a goroutine in Wait: that would hold a thread per pod.
	childreap.Reap(cmd.Process)
	klog.FromContext(ctx).V(2).Info("Started pod monitor", "podSandboxID", opts.PodID, "pid", cmd.Process.Pid)
	return cmd.Process.Pid, nil
}

func (o *LaunchOptions) logName() string {
	if o.LogFile == "" {
		return os.DevNull
	}
	return o.LogFile
}

// prepareLaunch builds the command. cleanup closes the daemon's copies of the descriptors
// handed to the child; ready is the read end of the readiness pipe.
func prepareLaunch(opts LaunchOptions) (cmd *exec.Cmd, cleanup func(), ready *os.File, retErr error) {
	if opts.PodID == "" || opts.Dir == "" {
		return nil, nil, nil, errors.New("launch monitor: pod ID and directory are required")
	}
	exe := opts.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, nil, nil, fmt.Errorf("launch monitor: find own executable: %w", err)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("create monitor directory %s: %w", opts.Dir, err)
	}
	var closers []*os.File
	cleanup = func() {
		for _, f := range closers {
			_ = f.Close()
		}
	}
	defer func() {
		if retErr != nil {
			cleanup()
		}
	}()
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	closers = append(closers, stdin)
	out := stdin
	if opts.LogFile != "" {
		if out, err = os.OpenFile(opts.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return nil, nil, nil, fmt.Errorf("open monitor log %s: %w", opts.LogFile, err)
		}
		closers = append(closers, out)
	} else if out, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
		return nil, nil, nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	} else {
		closers = append(closers, out)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("readiness pipe: %w", err)
	}
	closers = append(closers, w)
	args := opts.Args
	if len(args) == 0 {
		args = []string{"monitor"}
	}
	args = append(append([]string(nil), args...), "--pod", opts.PodID, "--dir", opts.Dir, "--ready-fd", "3")
	if opts.ExeFile != nil {
		if exe, err = exeFilePath(opts.ExeFile, &closers); err != nil {
			return nil, nil, nil, err
		}
	}
	cmd = exec.Command(exe, args...)
	cmd.Args[0] = "cri-mini"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, out, out
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = leanRuntimeEnv(opts.Env)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd, cleanup, r, nil
}

// exeFilePath returns the /proc/self/fd path the child executes f through. execve resolves
// the path before it closes the close-on-exec descriptors, so f needs no slot in the
// child's table; it only must not be one of the slots the child's stdio and ExtraFiles are
// dup'ed onto (0-3), or it would be replaced before the execve: a low one is duplicated.
func exeFilePath(f *os.File, closers *[]*os.File) (string, error) {
	fd := int(f.Fd())
	if fd < minExeFD {
		dup, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, minExeFD)
		if err != nil {
			return "", fmt.Errorf("duplicate the monitor's binary descriptor: %w", err)
		}
		*closers = append(*closers, os.NewFile(uintptr(dup), f.Name()))
		fd = dup
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), nil
}

// minExeFD is above every descriptor the monitor's command sets up (0-2, the ready pipe 3).
const minExeFD = 10

// leanRuntimeEnv is env (the daemon's when nil) with the Go runtime settings that keep
// an idle monitor small, applied from its first instruction (settings made in main come
// after the runtime and the packages' inits have run):
//   - memory profiling off: the first profiled allocation makes the runtime allocate the
//     profile's bucket table and stacks, about 300 KiB kept for the pod's life, never read;
//   - one P (GOMAXPROCS=1, as tune() sets later anyway): with one P per CPU at start-up
//     the runtime starts more threads and per-P caches, 100-300 KiB more.
//
// A GOMAXPROCS the daemon was given is kept; GODEBUG settings are kept and extended.
func leanRuntimeEnv(env []string) []string {
	if env == nil {
		env = os.Environ()
	}
	out := make([]string, 0, len(env)+2)
	godebug, maxprocs := "memprofilerate=0", "GOMAXPROCS=1"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if v != "" {
				godebug = v + "," + godebug
			}
			continue
		}
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			maxprocs = ""
		}
		out = append(out, kv)
	}
	out = append(out, "GODEBUG="+godebug)
	if maxprocs != "" {
		out = append(out, maxprocs)
	}
	return out
}

// waitReady reads the monitor's readiness line: "ready", or "error: ..." from a monitor
// that failed to start, or EOF from one that died.
func waitReady(ctx context.Context, ready *os.File) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	dl, _ := ctx.Deadline()
	if err := ready.SetReadDeadline(dl); err != nil {
		// Not pollable: fall back to the context via a watcher.
		stop := context.AfterFunc(ctx, func() { _ = ready.Close() })
		defer stop()
	} else {
		// A caller that gives up before the deadline ends the wait too.
		stop := context.AfterFunc(ctx, func() { _ = ready.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	line, err := bufio.NewReader(ready).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		return nil
	case strings.HasPrefix(line, "error: "):
		return errors.New(strings.TrimPrefix(line, "error: "))
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("not ready by %s: %w", dl.Format(time.RFC3339), ctx.Err())
	case err != nil:
		return fmt.Errorf("exited before it was ready: %w", err)
	default:
		return fmt.Errorf("unexpected readiness line %q", line)
	}
}
