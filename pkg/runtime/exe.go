package runtime

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// sealMask are the seals that make a memfd copy of the binary immutable for good.
const sealMask = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// SealedExecutable returns a sealed memfd copy of the binary at path, or of the running
// binary when path is empty (see sealedSelf). The daemon makes one and starts every monitor
// from it: a monitor then runs from a sealed copy itself and spawns container inits and
// exec helpers from it without copying again. The binary must have the init and
// exec-helper subcommands (cri-mini, cri-mini-monitor).
func SealedExecutable(path string) (*os.File, error) {
	if path == "" {
		return sealedSelf()
	}
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open binary to seal: %w", err)
	}
	defer src.Close()
	return sealedCopy(src)
}

// sealedSelf returns a sealed memfd copy of the running binary, to re-execute as the
// container init or exec helper.
//
// CVE-2019-5736: a process that re-executes its own binary inside a container is, until its
// final execve, a host binary running in the container's PID namespace. A process in the
// container (an exec, or a privileged container) can open /proc/<pid>/exe and, once our
// process is gone, reopen that handle for writing and replace the host's cri-mini. Executing
// a memfd copy sealed against writes (F_SEAL_WRITE, SHRINK, GROW, then F_SEAL_SEAL) makes
// /proc/<pid>/exe point at that copy, which nothing can modify, and never at the host file.
//
// When this process already runs from such a copy (a monitor started by the daemon from
// SealedExecutable), the copy is reopened instead of copied again: the ~18 MB copy per spawn
// was most of CreateContainer's time, and the shared copy's pages are paid once per daemon,
// not per container.
//
// (A read-only overlay of the binary's directory would avoid the copy, but overlayfs needs
// two distinct lower directories without an upper one, which the binary alone cannot give.)
func sealedSelf() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open own binary: %w", err)
	}
	if isSealed(src) {
		return src, nil
	}
	defer src.Close()
	return sealedCopy(src)
}

// isSealed reports whether f is a memfd whose content can never change again. Any other
// file (the host binary on disk, a memfd missing a seal) fails F_GET_SEALS or the mask.
func isSealed(f *os.File) bool {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	return err == nil && seals&sealMask == sealMask
}

func sealedCopy(src *os.File) (_ *os.File, retErr error) {
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
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, sealMask); err != nil {
		return nil, fmt.Errorf("seal binary copy: %w", err)
	}
	return f, nil
}

// SealedBinary is one sealed copy (SealedExecutable) of a binary, made on first use and kept
// for the owner's life: every process started from it maps the same pages instead of a copy
// of its own. Processes started by an earlier owner keep their copy alive until they exit.
// Safe for concurrent use.
type SealedBinary struct {
	path string // "" is this executable

	mu sync.Mutex
	f  *os.File
}

// NewSealedBinary returns the lazily made sealed copy of path ("" is this executable).
func NewSealedBinary(path string) *SealedBinary { return &SealedBinary{path: path} }

// Get returns the sealed copy, making it on the first call. A failure is not kept: the next
// call tries again. The caller must not close the file.
func (b *SealedBinary) Get() (*os.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f != nil {
		return b.f, nil
	}
	f, err := SealedExecutable(b.path)
	if err != nil {
		return nil, err
	}
	b.f = f
	return f, nil
}

// Close releases the copy; processes started from it keep their mapping.
func (b *SealedBinary) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f != nil {
		_ = b.f.Close()
		b.f = nil
	}
}
