package ns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UsernsSpawn describes a process to start inside an existing user namespace.
type UsernsSpawn struct {
	// Path is the program to execute, Args its argv (Args[0] included), Env its environment.
	Path string
	Args []string
	Env  []string
	// Files become the child's descriptors 0, 1, 2, ... in order; every one must be open.
	Files []*os.File
	// Userns is the path of the user namespace to join (an nsfs file, a pin or
	// /proc/<pid>/ns/user). The child takes uid and gid 0 of that namespace, no
	// supplementary groups, and the full capability set inside it.
	Userns string
	// Cloneflags are the namespaces the child gets of its own, created inside the user
	// namespace so that they are owned by it: CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWCGROUP.
	Cloneflags uintptr
	// CgroupFD, when not -1, is an open cgroup v2 directory the child starts in
	// (CLONE_INTO_CGROUP): it runs nothing outside it.
	CgroupFD int
	// Setsid gives the child a session of its own; Setctty then makes descriptor 0 its
	// controlling terminal.
	Setsid, Setctty bool
}

// UsernsChild is a process started by StartInUserns: a child of the caller, known by a
// pidfd, so that neither signalling nor waiting can reach a recycled pid. The pidfd is an
// *os.File: dropping the child without Release closes it with the file's finalizer.
type UsernsChild struct {
	Pid   int
	pidfd *os.File
}

// Signal sends sig to the child through its pidfd. It returns os.ErrProcessDone once the
// child has exited.
func (c *UsernsChild) Signal(sig syscall.Signal) error {
	err := unix.PidfdSendSignal(int(c.pidfd.Fd()), sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Wait waits for the child to exit and reaps it. It fails with ECHILD when another waiter
// (a wait4(-1) reaper) reaped it first.
func (c *UsernsChild) Wait() (syscall.WaitStatus, error) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, int(c.pidfd.Fd()), &info, unix.WEXITED, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for pid %d: %w", c.Pid, err)
		}
		return waitStatus(&info), nil
	}
}

// Release closes the pidfd; the child is not touched.
func (c *UsernsChild) Release() error { return c.pidfd.Close() }

// waitStatus turns waitid's siginfo into the wait4 status the rest of the code reads.
func waitStatus(info *unix.Siginfo) syscall.WaitStatus {
	// siginfo_t for SIGCHLD: si_signo, si_errno, si_code, (pad), si_pid, si_uid, si_status.
	raw := (*[8]int32)(unsafe.Pointer(info))
	code, status := raw[2], raw[6]
	switch code {
	case 1: // CLD_EXITED
		return syscall.WaitStatus(status&0xff) << 8
	case 3: // CLD_DUMPED
		return syscall.WaitStatus(status&0x7f) | 0x80
	default: // CLD_KILLED
		return syscall.WaitStatus(status & 0x7f)
	}
}

// StartInUserns starts s from a throw-away locked thread that joined the namespaces in p,
// like StartIn, except that the child also joins the user namespace s.Userns, and gets the
// namespaces of s.Cloneflags created inside it.
//
// A multithreaded process cannot join a user namespace (setns(CLONE_NEWUSER) refuses it),
// and Go's fork path has no step that joins one, so this forks by hand, the way runc's
// nsexec does in C: the forked copy is single-threaded and runs only raw system calls. It
// joins the user namespace, becomes its root, and clones the final child with
// CLONE_PARENT, which makes that child ours (we reap it and get its exit status), in new
// namespaces that belong to the user namespace (proc and sysfs can only be mounted in
// namespaces owned by the mounter's user namespace). The intermediate process hands over a
// pidfd of the child and exits.
func StartInUserns(p Paths, s UsernsSpawn) (*UsernsChild, error) {
	var child *UsernsChild
	err := Do(p, func() error {
		var err error
		child, err = forkInUserns(&s)
		return err
	})
	return child, err
}

// Stages of the forked code, reported with the errno of a failure.
const (
	stageSetns int32 = iota + 1
	stageSetgroups
	stageSetgid
	stageSetuid
	stageClone
	stageDup
	stageSetsid
	stageSetctty
	stageExec
)

var stageNames = map[int32]string{
	stageSetns: "join the user namespace", stageSetgroups: "setgroups", stageSetgid: "setresgid",
	stageSetuid: "setresuid", stageClone: "clone3", stageDup: "set up descriptors",
	stageSetsid: "setsid", stageSetctty: "set the controlling terminal", stageExec: "execve",
}

// cloneArgs is the kernel's struct clone_args (clone3(2)).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

// forkArgs is everything the forked code needs, prepared before the fork: the forked code
// must not allocate or call anything but raw system calls.
type forkArgs struct {
	userns          uintptr
	argv0           *byte
	argv, envv      []*byte
	srcs            []uintptr // srcs[i] becomes descriptor i; all are above len(srcs)
	setsid, setctty bool
	outer           cloneArgs // the intermediate's clone3
	outerPidfd      int32     // where that clone3 stores the intermediate's pidfd
	clone           cloneArgs // the final child's clone3, in the intermediate
	childPidfd      int32     // where clone3 stores the final child's pidfd (intermediate's table)
	reportW, goR    uintptr
	goW             uintptr // closed by the intermediate, so that only we hold it
	errW            uintptr
	report          [3]int32 // stage (0: success), errno or pid, pidfd number
}

func forkInUserns(s *UsernsSpawn) (_ *UsernsChild, retErr error) {
	a := &forkArgs{setsid: s.Setsid, setctty: s.Setctty}
	var err error
	if a.argv0, err = syscall.BytePtrFromString(s.Path); err != nil {
		return nil, err
	}
	if a.argv, err = syscall.SlicePtrFromStrings(s.Args); err != nil {
		return nil, err
	}
	if a.envv, err = syscall.SlicePtrFromStrings(s.Env); err != nil {
		return nil, err
	}
	var toClose []int
	defer func() {
		for _, fd := range toClose {
			_ = unix.Close(fd)
		}
	}()
	userns, err := unix.Open(s.Userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open user namespace %s: %w", s.Userns, err)
	}
	toClose = append(toClose, userns)
	a.userns = uintptr(userns)
	// Copies above every target number, so that placing one never overwrites another.
	for i, f := range s.Files {
		if f == nil {
			return nil, fmt.Errorf("descriptor %d of %s is not open", i, s.Path)
		}
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, len(s.Files))
		if err != nil {
			return nil, fmt.Errorf("duplicate descriptor %d for %s: %w", i, s.Path, err)
		}
		toClose = append(toClose, fd)
		a.srcs = append(a.srcs, uintptr(fd))
	}
	var report, gate, errp [2]int
	for _, p := range []*[2]int{&report, &gate, &errp} {
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		toClose = append(toClose, p[0])
	}
	// The final child writes a failure to errp[1] after placing its descriptors: it must sit
	// above them too, or a dup3 could replace it.
	high, err := unix.FcntlInt(uintptr(errp[1]), unix.F_DUPFD_CLOEXEC, len(s.Files))
	_ = unix.Close(errp[1])
	if err != nil {
		return nil, fmt.Errorf("duplicate error pipe: %w", err)
	}
	errp[1] = high
	// The write ends are closed by hand below, at the point where each must go.
	writeEnds := []int{report[1], gate[1], errp[1]}
	defer func() {
		for _, fd := range writeEnds {
			if fd >= 0 {
				_ = unix.Close(fd)
			}
		}
	}()
	a.reportW, a.goR, a.goW, a.errW = uintptr(report[1]), uintptr(gate[0]), uintptr(gate[1]), uintptr(errp[1])
	a.clone = cloneArgs{flags: uint64(unix.CLONE_PARENT|unix.CLONE_PIDFD) | uint64(s.Cloneflags)}
	a.clone.pidfd = uint64(uintptr(unsafe.Pointer(&a.childPidfd)))
	a.outer = cloneArgs{flags: unix.CLONE_PIDFD, exitSignal: uint64(unix.SIGCHLD)}
	a.outer.pidfd = uint64(uintptr(unsafe.Pointer(&a.outerPidfd)))
	a.outerPidfd = -1
	if s.CgroupFD >= 0 {
		// Into the cgroup with the intermediate, while it is still host root: the final
		// child inherits it (and a new cgroup namespace is rooted there).
		a.outer.flags |= unix.CLONE_INTO_CGROUP
		a.outer.cgroup = uint64(s.CgroupFD)
	}

	pid, interPidfd, errno := forkIntermediate(a)
	if errno != 0 {
		return nil, fmt.Errorf("fork to join user namespace %s: %w", s.Userns, errno)
	}
	// Only the children keep the write ends of the report and error pipes now.
	_ = unix.Close(report[1])
	_ = unix.Close(errp[1])
	writeEnds[0], writeEnds[2] = -1, -1

	child, err := takeChild(a, report[0], interPidfd)
	if err == nil {
		// The pidfd is ours: the intermediate may leave the child running.
		if _, werr := unix.Write(gate[1], []byte{1}); werr != nil {
			_ = child.Signal(unix.SIGKILL)
			_, _ = child.Wait()
			_ = child.Release()
			child, err = nil, fmt.Errorf("release the intermediate: %w", werr)
		}
	}
	// The intermediate may exit now (killing the child unless released above); it is our
	// child, reap it (a wait4(-1) reaper may have done so already: ECHILD).
	_ = unix.Close(gate[1])
	writeEnds[1] = -1
	// Reaped in the background: nothing waits for the intermediate's exit.
	go func() {
		reapPidfd(interPidfd)
		_ = unix.Close(interPidfd)
	}()
	if err != nil {
		return nil, fmt.Errorf("start %s in user namespace %s (via pid %d): %w", s.Path, s.Userns, pid, err)
	}
	err = execResult(errp[0])
	if err == nil && child.Pid < 0 {
		err = errors.New("it exited at once and another waiter reaped it")
	}
	if err != nil {
		_ = child.Signal(unix.SIGKILL)
		_, _ = child.Wait()
		_ = child.Release()
		return nil, fmt.Errorf("start %s in user namespace %s: %w", s.Path, s.Userns, err)
	}
	return child, nil
}

// takeChild reads the intermediate's report and copies the final child's pidfd out of the
// intermediate's descriptor table (it waits for us until the gate closes).
func takeChild(a *forkArgs, reportR, interPidfd int) (*UsernsChild, error) {
	var rep [3]int32
	n, err := readFull(reportR, unsafe.Slice((*byte)(unsafe.Pointer(&rep[0])), 12))
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	if n != 12 {
		return nil, errors.New("the forked process ended without a report")
	}
	if rep[0] != 0 {
		return nil, fmt.Errorf("%s: %w", stageNames[rep[0]], unix.Errno(rep[1]))
	}
	fd, err := unix.PidfdGetfd(interPidfd, int(rep[2]), 0)
	if err != nil {
		return nil, fmt.Errorf("take the pidfd of the child: %w", err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	// clone3 returned the pid in the intermediate's PID namespace, which is a container's
	// for an exec: the pidfd tells the pid in ours.
	pid, err := pidfdPid(fd)
	if err != nil {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		reapPidfd(fd)
		_ = f.Close()
		return nil, err
	}
	return &UsernsChild{Pid: pid, pidfd: f}, nil
}

// pidfdPid reads the pid of a pidfd's process, in this process's PID namespace.
func pidfdPid(fd int) (int, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, fmt.Errorf("read pidfd info: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || pid == 0 || pid < -1 {
				return 0, fmt.Errorf("pidfd info has pid %q", v)
			}
			// -1: the process has exited and was reaped (by a wait4(-1) reaper): the
			// caller learns why from the error pipe.
			return pid, nil
		}
	}
	return 0, errors.New("pidfd info has no pid")
}

// execResult reads the final child's error pipe: EOF means execve succeeded (the pipe is
// close-on-exec), a record is the stage and errno it failed with.
func execResult(errR int) error {
	var rep [2]int32
	n, err := readFull(errR, unsafe.Slice((*byte)(unsafe.Pointer(&rep[0])), 8))
	if err != nil {
		return fmt.Errorf("read exec result: %w", err)
	}
	if n == 0 {
		return nil
	}
	if n != 8 {
		return errors.New("short exec result")
	}
	return fmt.Errorf("%s: %w", stageNames[rep[0]], unix.Errno(rep[1]))
}

func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

func reapPidfd(pidfd int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
