package runtime

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// PauseCommand is the subcommand of the pod's built-in init (`cri-mini pause`), PID 1 of the
// PID namespace that the containers of a shared-PID pod join.
const PauseCommand = "pause"

// Descriptors of the pause process (exec.Cmd.ExtraFiles order).
const (
	fdPauseGate = 3 // pipe: one byte once the pause is in its cgroup and recorded
	fdPauseExe  = 4 // the sealed binary it was executed from
)

// PauseMain is `cri-mini pause`. It waits for its starter's go-ahead, then reaps every
// orphan of the pod's PID namespace until SIGTERM or SIGINT. As PID 1 of a namespace it only
// receives the signals it has handlers for (kernel rule for a namespace's init), so the
// others sent from inside the pod are dropped; the ones that would otherwise stop it or make
// the Go runtime exit are ignored explicitly for senders outside the namespace.
func PauseMain() int {
	// Handlers first: a SIGTERM that arrives while it is still starting is kept for the loop
	// below, an ignored signal never finds the default action.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	signal.Ignore(syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE,
		syscall.SIGALRM, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGWINCH)
	gate := os.NewFile(fdPauseGate, "gate")
	var b [1]byte
	if n, _ := gate.Read(b[:]); n != 1 {
		// The starter died or gave up before recording us: nobody would ever stop us.
		return 1
	}
	// Nothing of the daemon's may stay open in a process that lives as long as the pod. Only
	// the gate and the binary were inherited (Go opens everything else close-on-exec); a
	// blanket close_range would also close the Go runtime's own descriptors (its epoll).
	_ = gate.Close()
	_ = unix.Close(fdPauseExe)
	if err := os.Chdir("/"); err != nil {
		fmt.Fprintf(os.Stderr, "cri-mini pause: chdir /: %v\n", err)
		return 1
	}
	// Reaping needs no privilege: run as an unprivileged user (the uid containerd's pause
	// image uses), which also clears every capability of the process.
	if err := dropPrivileges(); err != nil {
		fmt.Fprintf(os.Stderr, "cri-mini pause: %v\n", err)
		return 1
	}
	// Not dumpable (after the uid change, which resets it): processes of the pod then need
	// CAP_SYS_PTRACE to open /proc/1/root, /proc/1/cwd or /proc/1/fd, which lead to the host.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "cri-mini pause: set not dumpable: %v\n", err)
		return 1
	}
	for {
		reapOrphans()
		if s := <-sigs; s != syscall.SIGCHLD {
			return 0
		}
	}
}

// reapOrphans collects every exited child without blocking. SIGCHLD only says at least one
// child changed; the loop ends at the first "none left" answer, so it is bounded by the
// number of exited children.
func reapOrphans() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

// pauseUID is the user and group the pause runs as.
const pauseUID = 65535

// dropPrivileges switches every thread (the syscall package applies it process-wide) to
// pauseUID with no supplementary groups.
func dropPrivileges() error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(pauseUID, pauseUID, pauseUID); err != nil {
		return fmt.Errorf("set gid %d: %w", pauseUID, err)
	}
	if err := syscall.Setresuid(pauseUID, pauseUID, pauseUID); err != nil {
		return fmt.Errorf("set uid %d: %w", pauseUID, err)
	}
	return nil
}
