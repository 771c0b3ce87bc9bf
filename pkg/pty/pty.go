// Package pty allocates pseudo-terminals for containers (the monitor, for a container with
// a tty) and exec sessions (the daemon), and resizes them. It depends on x/sys/unix alone:
// the monitor links it and stays lean.
package pty

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Open allocates a terminal pair from the host's /dev/ptmx. The replica is the process's
// stdio and controlling terminal; the master stays with the caller. With nonblocking, the
// master is served by Go's poller, so closing it ends a pending read (a background process
// may hold the replica open forever); the replica stays blocking, as a process's stdio
// expects.
func Open(nonblocking bool) (master, replica *os.File, retErr error) {
	flags := unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC
	if nonblocking {
		flags |= unix.O_NONBLOCK
	}
	mfd, err := unix.Open("/dev/ptmx", flags, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	master = os.NewFile(uintptr(mfd), "/dev/ptmx")
	defer func() {
		if retErr != nil {
			_ = master.Close()
		}
	}()
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, nil, fmt.Errorf("unlock terminal: %w", err)
	}
	// TIOCGPTPEER opens the replica through the master, immune to a swapped /dev/pts path.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno == 0 {
		return master, os.NewFile(r, "pts"), nil
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		return nil, nil, fmt.Errorf("terminal number: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	return master, os.NewFile(uintptr(sfd), name), nil
}

// Resize sets the terminal's size through its master. It goes through SyscallConn, not Fd
// (which would put a non-blocking master back into blocking mode); Control holds a
// reference on the descriptor, so a master closed meanwhile is never confused with a
// reused number: that case is an error wrapping os.ErrClosed.
func Resize(master *os.File, width, height uint16) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return fmt.Errorf("terminal resize: %w", err)
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width})
	}); err != nil {
		// Control only fails on a closed file, with poll's own error: say it as os does.
		return fmt.Errorf("terminal resize: %w: %w", os.ErrClosed, err)
	}
	if ioctlErr != nil {
		return fmt.Errorf("terminal resize to %dx%d: %w", width, height, ioctlErr)
	}
	return nil
}
