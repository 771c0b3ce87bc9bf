package ns

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The runtime's fork hooks, as package syscall uses them around its own fork: before,
// signals are blocked on this thread and stack growth is made fatal (the forked copy must
// not enter the runtime); after, in the parent, both are restored; in the child, signal
// handlers are reset and the mask restored. The runtime keeps these names linkable for
// code outside syscall (go.dev/issue/67401). The bodies live in the runtime; the empty
// assembly file of this package lets them be declared without one.

//go:linkname beforeFork syscall.runtime_BeforeFork
func beforeFork()

//go:linkname afterFork syscall.runtime_AfterFork
func afterFork()

//go:linkname afterForkInChild syscall.runtime_AfterForkInChild
func afterForkInChild()

// forkIntermediate forks this thread (a plain fork: the copy has its own memory) and runs
// inUserns in the copy. It returns the copy's pid and a pidfd of it. The copy starts in
// a.outer's cgroup, if any: CLONE_INTO_CGROUP checks that the caller may write the target's
// cgroup.procs, which host root may and the root of a user namespace may not.
//
//go:norace
//go:nosplit
func forkIntermediate(a *forkArgs) (pid int, pidfd int, errno syscall.Errno) {
	syscall.ForkLock.Lock()
	beforeFork()
	r, _, e := syscall.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&a.outer)), unsafe.Sizeof(a.outer), 0)
	if e != 0 || r != 0 {
		afterFork()
		syscall.ForkLock.Unlock()
		return int(r), int(a.outerPidfd), e
	}
	inUserns(a)
	return 0, 0, 0 // not reached: inUserns exits
}

// inUserns is the intermediate process: single-threaded, it joins the user namespace,
// becomes its root and clones the final child as a sibling (CLONE_PARENT). Only raw system
// calls from here on; it never returns.
//
//go:norace
//go:nosplit
func inUserns(a *forkArgs) {
	var stage int32
	var r uintptr
	var e syscall.Errno
	afterForkInChild()
	syscall.RawSyscall(unix.SYS_CLOSE, a.goW, 0, 0)
	if _, _, e = syscall.RawSyscall(unix.SYS_SETNS, a.userns, unix.CLONE_NEWUSER, 0); e != 0 {
		stage = stageSetns
		goto fail
	}
	// Root of the namespace: the caps a joiner gets are kept across these calls because
	// the old ids (host root, unmapped here) were not the namespace's root.
	if _, _, e = syscall.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		stage = stageSetgroups
		goto fail
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_SETRESGID, 0, 0, 0); e != 0 {
		stage = stageSetgid
		goto fail
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_SETRESUID, 0, 0, 0); e != 0 {
		stage = stageSetuid
		goto fail
	}
	r, _, e = syscall.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&a.clone)), unsafe.Sizeof(a.clone), 0)
	if e != 0 {
		stage = stageClone
		goto fail
	}
	if r == 0 {
		final(a)
	}
	// Only the final child reports on the error pipe: its EOF then waits for its execve
	// alone, not for this process to exit too.
	syscall.RawSyscall(unix.SYS_CLOSE, a.errW, 0, 0)
	a.report = [3]int32{0, int32(r), a.childPidfd}
	syscall.RawSyscall(unix.SYS_WRITE, a.reportW, uintptr(unsafe.Pointer(&a.report[0])), 12)
	// Hold the pidfd until the parent has copied it and says so with one byte on the gate.
	// EOF instead (the parent failed or died): the child would run untracked, kill it.
	r, _, e = syscall.RawSyscall(unix.SYS_READ, a.goR, uintptr(unsafe.Pointer(&a.report[0])), 1)
	if r != 1 {
		syscall.RawSyscall6(unix.SYS_PIDFD_SEND_SIGNAL, uintptr(a.childPidfd), uintptr(unix.SIGKILL), 0, 0, 0, 0)
	}
	syscall.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
fail:
	a.report = [3]int32{stage, int32(e), -1}
	syscall.RawSyscall(unix.SYS_WRITE, a.reportW, uintptr(unsafe.Pointer(&a.report[0])), 12)
	syscall.RawSyscall(unix.SYS_EXIT_GROUP, 1, 0, 0)
}

// final is the process that runs the program: it places its descriptors, takes its
// session and terminal, and executes. A failure is written to the error pipe, which
// execve closes on success.
//
//go:norace
//go:nosplit
func final(a *forkArgs) {
	var stage int32
	var e syscall.Errno
	var i int
	for i = 0; i < len(a.srcs); i++ {
		// dup3 makes the copy without close-on-exec: the program keeps it.
		if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, a.srcs[i], uintptr(i), 0); e != 0 {
			stage = stageDup
			goto fail
		}
	}
	if a.setsid {
		if _, _, e = syscall.RawSyscall(unix.SYS_SETSID, 0, 0, 0); e != 0 {
			stage = stageSetsid
			goto fail
		}
	}
	if a.setctty {
		if _, _, e = syscall.RawSyscall(unix.SYS_IOCTL, 0, unix.TIOCSCTTY, 1); e != 0 {
			stage = stageSetctty
			goto fail
		}
	}
	_, _, e = syscall.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(a.argv0)),
		uintptr(unsafe.Pointer(&a.argv[0])), uintptr(unsafe.Pointer(&a.envv[0])))
	stage = stageExec
fail:
	a.report = [3]int32{stage, int32(e), 0}
	syscall.RawSyscall(unix.SYS_WRITE, a.errW, uintptr(unsafe.Pointer(&a.report[0])), 8)
	syscall.RawSyscall(unix.SYS_EXIT_GROUP, 127, 0, 0)
}
