package ns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrSysctl is wrapped by every sysctl validation error so callers can classify it as an
// invalid argument.
var ErrSysctl = errors.New("invalid sysctl")

// SysctlKind returns the namespace a sysctl lives in, and false for a sysctl that is not
// namespaced (writing it from a pod would change the whole host). The list follows the
// kernel: net.* is per network namespace; the SysV IPC limits and POSIX message queue
// limits are per IPC namespace; kernel.hostname/domainname are per UTS namespace.
func SysctlKind(name string) (Kind, bool) {
	n := NormalizeSysctl(name)
	switch {
	case strings.HasPrefix(n, "net."):
		return Net, true
	case strings.HasPrefix(n, "fs.mqueue."),
		n == "kernel.sem",
		strings.HasPrefix(n, "kernel.shm"),
		strings.HasPrefix(n, "kernel.msg"):
		return IPC, true
	case n == "kernel.domainname", n == "kernel.hostname":
		return UTS, true
	}
	return "", false
}

// NormalizeSysctl converts the slash form Kubernetes accepts ("net/ipv4/conf/eth0.100/rp_filter")
// to the dotted form ("net.ipv4.conf.eth0/100.rp_filter"): in the slash form a dot is part of
// a name, in the dotted form a slash is.
func NormalizeSysctl(name string) string {
	sep := strings.IndexAny(name, "./")
	if sep < 0 || name[sep] == '.' {
		return name
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, name)
}

// sysctlPath maps a dotted sysctl name to its file under /proc/sys.
func sysctlPath(name string) string {
	n := NormalizeSysctl(name)
	return filepath.Join("/proc/sys", strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, n))
}

// CheckSysctls validates names and values and refuses any sysctl whose namespace is not in
// kinds: such a write would change the host (net.* with the host network, for example).
func CheckSysctls(sysctls map[string]string, kinds []Kind) error {
	for name, value := range sysctls {
		if name == "" || strings.Contains(name, "..") || strings.ContainsAny(name, " \t\n\x00") ||
			strings.HasPrefix(name, "/") || strings.HasPrefix(name, ".") {
			return fmt.Errorf("sysctl %q: malformed name: %w", name, ErrSysctl)
		}
		if strings.ContainsAny(value, "\n\x00") {
			return fmt.Errorf("sysctl %q: value contains a newline or NUL: %w", name, ErrSysctl)
		}
		k, ok := SysctlKind(name)
		if !ok {
			return fmt.Errorf("sysctl %q is not namespaced and would change the host: %w", name, ErrSysctl)
		}
		found := false
		for _, x := range kinds {
			if x == k {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("sysctl %q needs a pod %s namespace but the host's is used: %w", name, k, ErrSysctl)
		}
	}
	return nil
}

// writeSysctls writes every sysctl from the current (locked) thread, in a stable order so
// failures are reproducible.
func writeSysctls(sysctls map[string]string) error {
	names := make([]string, 0, len(sysctls))
	for n := range sysctls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := sysctlPath(n)
		// O_NOFOLLOW-free plain open is fine: /proc/sys has no symlinks and the name was
		// checked for traversal.
		if err := os.WriteFile(p, []byte(sysctls[n]), 0); err != nil {
			return fmt.Errorf("write sysctl %s=%q: %w", n, sysctls[n], err)
		}
	}
	return nil
}

// ReadSysctl reads a sysctl value as seen from the calling thread's namespaces (use it with
// Do to read a pod's value).
func ReadSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// setLinkUp sets IFF_UP on a link of the calling thread's network namespace; the socket is
// created on this thread, so it belongs to that namespace.
func setLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open control socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// LinkIsUp reports whether a link of the calling thread's network namespace is up.
func LinkIsUp(name string) (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open control socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, fmt.Errorf("interface %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return false, fmt.Errorf("get flags of %s: %w", name, err)
	}
	return ifr.Uint16()&unix.IFF_UP != 0, nil
}
