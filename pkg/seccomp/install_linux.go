package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install loads prog as a seccomp filter on every thread of this process. The Go runtime
// runs several threads already, and a filter installed on one thread only would leave the
// others (and the processes they may start) unfiltered: SECCOMP_FILTER_FLAG_TSYNC makes
// the kernel apply it to all of them, or fail. Without no_new_privs the kernel requires
// CAP_SYS_ADMIN, so callers install the filter before dropping capabilities (runc's order).
//
// flags are further SECCOMP_FILTER_FLAG_* bits (see Flags).
func Install(prog []unix.SockFilter, flags uintptr) error {
	if len(prog) == 0 {
		return errors.New("install seccomp filter: empty program")
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC|flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	if r != 0 {
		// With TSYNC a positive result is the thread that could not be synchronised.
		return fmt.Errorf("install seccomp filter: thread %d cannot take the filter", r)
	}
	return nil
}
