package runtime

import (
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

	"github.com/cri-mini/cri-mini/pkg/ns"
)

// PauseOptions describe one pod init.
type PauseOptions struct {
	// Exe is a sealed copy of a binary with the pause subcommand (SealedExecutable): it is
	// what /proc/1/exe shows inside a shared-PID pod for the pod's life, so it must be one
	// nothing can write through (CVE-2019-5736, see sealedSelf). One copy serves every pause
	// its owner starts; the caller keeps it open.
	Exe *os.File
	// NS are the pod's namespaces to join; the PID namespace is always a new one.
	NS ns.Paths
	// Userns is the pod's user namespace ("" for the host's): the pause joins it, and its
	// PID namespace is created inside it, so that the pod's containers, root of that user
	// namespace, may mount its proc.
	Userns string
	// CgroupPath is the cgroup the pause runs in (it must exist).
	CgroupPath string
	Cgroups    Cgroups
	// Commit runs once the pause runs, is in its cgroup and has not done anything yet; it
	// records the pause. An error kills the pause; a pause whose starter dies before Commit
	// returns exits by itself.
	Commit func(p PauseProcess) error
}

// PauseProcess identifies a pause across restarts of its starter: the PID alone could be
// recycled, the PID with its start time (clock ticks since boot) cannot.
type PauseProcess struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
}

// StartPause starts `cri-mini pause` in a new PID namespace inside o.NS, in its own session,
// placed in o.CgroupPath before it runs. The caller reaps it with the returned process's Wait
// while it is its parent; after a restart of the caller, FindPause finds it again.
func StartPause(ctx context.Context, o PauseOptions) (_ *os.Process, _ PauseProcess, retErr error) {
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return nil, PauseProcess{}, fmt.Errorf("create pause gate: %w", err)
	}
	defer gateR.Close()
	defer gateW.Close()
	cmd := &exec.Cmd{
		// The child sees ExtraFiles from 3 on: 4 is the sealed binary.
		Path:       "/proc/self/fd/" + strconv.Itoa(fdPauseExe),
		Args:       []string{"cri-mini", PauseCommand},
		Env:        []string{},
		ExtraFiles: []*os.File{gateR, o.Exe},
		// Its own session: it outlives the daemon and must not share its terminal or signals.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWPID},
	}
	proc, err := startPauseProcess(cmd, o)
	if err != nil {
		return nil, PauseProcess{}, fmt.Errorf("start pod init: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = proc.Kill()
			_, _ = proc.Wait()
		}
	}()
	_ = gateR.Close()
	if !o.Cgroups.IsV2() {
		if err := joinCgroupV1(o.Cgroups, o.CgroupPath, proc.Pid); err != nil {
			return nil, PauseProcess{}, err
		}
	}
	start, err := startTicks(proc.Pid)
	if err != nil {
		return nil, PauseProcess{}, err
	}
	pp := PauseProcess{Pid: proc.Pid, StartTime: start}
	if o.Commit != nil {
		if err := o.Commit(pp); err != nil {
			return nil, PauseProcess{}, err
		}
	}
	if _, err := gateW.Write([]byte{1}); err != nil {
		return nil, PauseProcess{}, fmt.Errorf("release pod init: %w", err)
	}
	return proc, pp, nil
}

// startPauseProcess starts cmd, in o.Userns when set (Go's fork path cannot join a user
// namespace: see ns.StartInUserns) and in o.CgroupPath on cgroup v2.
func startPauseProcess(cmd *exec.Cmd, o PauseOptions) (*os.Process, error) {
	if o.Userns == "" {
		cgDir, err := intoCgroup(cmd, o.Cgroups, o.CgroupPath)
		if err != nil {
			return nil, err
		}
		if cgDir != nil {
			defer cgDir.Close()
		}
		if err := ns.StartIn(o.NS, cmd); err != nil {
			return nil, err
		}
		return cmd.Process, nil
	}
	s := ns.UsernsSpawn{Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Userns: o.Userns,
		Cloneflags: cmd.SysProcAttr.Cloneflags, Setsid: true}
	uc, err := startUserns(o.NS, s, [3]*os.File{}, cmd.ExtraFiles, o.Cgroups, o.CgroupPath)
	if err != nil {
		return nil, err
	}
	defer uc.Release()
	// Our unreaped child: its pid cannot be recycled before we wait for it, so a handle
	// opened by pid is this process.
	proc, err := os.FindProcess(uc.Pid)
	if err != nil {
		_ = uc.Signal(unix.SIGKILL)
		_, _ = uc.Wait()
		return nil, err
	}
	return proc, nil
}

// FindPause returns a pidfd of the recorded pause, or ok=false when it is gone (its PID
// unused, or reused by another process). The pidfd is opened before the start time is
// compared, so it refers to the recorded process whenever the times match.
func FindPause(p PauseProcess) (fd int, ok bool, err error) {
	fd, err = unix.PidfdOpen(p.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, fmt.Errorf("pidfd_open %d: %w", p.Pid, err)
	}
	// One read of stat: the start time names the process, the state says it still runs.
	f, err := statFields(p.Pid)
	if err != nil || f[19] != strconv.FormatUint(p.StartTime, 10) || f[0] == "Z" || f[0] == "X" {
		_ = unix.Close(fd)
		return -1, false, nil
	}
	return fd, true, nil
}

// StopPause ends the pause behind pidfd: SIGTERM, then SIGKILL after grace. The kernel
// kills whatever else is left in its PID namespace when it exits. It returns once the pause
// has exited (or ctx ends).
//
// SIGTERM is repeated during the grace period: a pause that has not yet installed its
// handler drops it, since the kernel ignores default-action signals (all but SIGKILL and
// SIGSTOP, from any sender) for the init of a PID namespace.
func StopPause(ctx context.Context, pidfd int, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		sig := unix.SIGTERM
		// A pause still starting has no handler yet, and as its namespace's PID 1 it drops a
		// signal it does not handle: send SIGTERM again soon.
		wait := 10 * time.Millisecond
		if !time.Now().Before(deadline) {
			sig, wait = unix.SIGKILL, 10*time.Second
		}
		if err := unix.PidfdSendSignal(pidfd, sig, nil, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return nil
			}
			return fmt.Errorf("signal pod init: %w", err)
		}
		exited, err := waitPidfd(ctx, pidfd, wait)
		if err != nil || exited {
			return err
		}
		if sig == unix.SIGKILL {
			return fmt.Errorf("pod init did not exit after SIGKILL")
		}
	}
}

// waitPidfd polls pidfd (readable once the process has exited) for at most d, in short
// slices so that ctx is honoured.
func waitPidfd(ctx context.Context, pidfd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 50)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false, fmt.Errorf("wait for pod init: %w", err)
		}
		if n > 0 {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("wait for pod init: %w", err)
		}
		if time.Now().After(deadline) {
			return false, nil
		}
	}
}

// startTicks is field 22 of /proc/<pid>/stat: the start time in clock ticks since boot.
func startTicks(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	t, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse start time of pid %d: %w", pid, err)
	}
	return t, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name (state first).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields restart after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("parse stat of pid %d: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("parse stat of pid %d: %d fields", pid, len(f))
	}
	return f, nil
}
