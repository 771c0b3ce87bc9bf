package ns

import (
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// StartIn starts cmd from a throw-away locked thread that joined the namespaces in p. The
// child inherits the thread's namespaces (with PID set, its PID namespace is p.PID), and
// cmd.SysProcAttr.Cloneflags may create more on top. The thread is discarded afterwards, so
// the caller's threads never change namespace. cmd.SysProcAttr.Pdeathsig must not be set:
// it would fire when the discarded thread exits, not when the caller does.
func StartIn(p Paths, cmd *exec.Cmd) error {
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Pdeathsig != 0 {
		return fmt.Errorf("start %s in namespaces: Pdeathsig is tied to the throw-away thread", cmd.Path)
	}
	return Do(p, cmd.Start)
}

// EnterMountNSForExec moves the calling thread into the mount namespace open at f. It is
// only for a helper process about to execve (or exit) on its main thread, which
// cmd/cri-mini locks in init(): setns(CLONE_NEWNS) needs a thread that does not share its
// fs_struct (root and cwd), so the thread first unshares CLONE_FS, an irreversible change
// that leaves it unusable for anything else. Every other thread of the process stays in
// the old mount namespace until the execve replaces them.
func EnterMountNSForExec(f *os.File) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs attributes before joining a mount namespace: %w", err)
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join mount namespace %s: %w", f.Name(), err)
	}
	return nil
}
