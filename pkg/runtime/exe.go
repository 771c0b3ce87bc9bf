package runtime

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sealedSelf returns a sealed memfd copy of the running binary, to re-execute as the
// container init or exec helper.
//
// CVE-2019-5736: a process that re-executes its own binary inside a container is, until its
// final execve, a host binary running in the container's PID namespace. A process in the
// container (an exec, or a privileged container) can open /proc/<pid>/exe and, once our
// process is gone, reopen that handle for writing and replace the host's cri-mini. Executing
// a memfd copy sealed against writes (F_SEAL_WRITE, SHRINK, GROW, then F_SEAL_SEAL) makes
// /proc/<pid>/exe point at that copy, which nothing can modify, and never at the host file.
// The copy lives only until the child's execve (its last reference): the memory is held
// briefly per spawn instead of for the lifetime of the monitor.
//
// (A read-only overlay of the binary's directory would avoid the copy, but overlayfs needs
// two distinct lower directories without an upper one, which the binary alone cannot give.)
func sealedSelf() (_ *os.File, retErr error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open own binary: %w", err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("cri-mini", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create for the sealed binary: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:cri-mini")
	defer func() {
		if retErr != nil {
			_ = f.Close()
		}
	}()
	// io.Copy uses copy_file_range/sendfile between the two files: no user-space buffer.
	if _, err := io.Copy(f, src); err != nil {
		return nil, fmt.Errorf("copy own binary into memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return nil, fmt.Errorf("seal binary copy: %w", err)
	}
	return f, nil
}
