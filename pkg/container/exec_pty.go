package container

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openPTY allocates a terminal pair from the host's /dev/ptmx for an exec with a tty. The
// master is non-blocking, so Go's poller serves it and closing it ends a pending read (a
// background process may hold the replica forever); the replica stays blocking, as a
// process's stdio expects.
func openPTY() (master, replica *os.File, retErr error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
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

// setWinsize sets the terminal's size through its master. It goes through SyscallConn,
// not Fd, which would put the master back into blocking mode.
func setWinsize(master *os.File, sz TermSize) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return fmt.Errorf("terminal resize: %w", err)
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
	}); err != nil {
		// Control only fails on a closed file, with poll's own error: say it as os does.
		return fmt.Errorf("terminal resize: %w: %w", os.ErrClosed, err)
	}
	if ioctlErr != nil {
		return fmt.Errorf("terminal resize to %dx%d: %w", sz.Width, sz.Height, ioctlErr)
	}
	return nil
}
