package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/seccomp"
)

var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC,
	"RLIMIT_RSS": unix.RLIMIT_RSS, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING, "RLIMIT_STACK": unix.RLIMIT_STACK,
}

// prepareProcess applies the process part of the spec to this process, inside the
// container's root, and returns the resolved executable. Shared by the init and the exec
// helper. Limits come first, while we still hold CAP_SYS_RESOURCE (raising a hard limit or
// lowering oom_score_adj needs it); the user switch comes last but for the working dir,
// which is entered as the user so that its permissions apply. filter is the container's
// seccomp profile (nil: none).
func prepareProcess(p *specs.Process, filter *specs.LinuxSeccomp) (string, error) {
	for _, r := range p.Rlimits {
		res, ok := rlimitTypes[r.Type]
		if !ok {
			return "", fmt.Errorf("unknown rlimit %q", r.Type)
		}
		if err := unix.Prlimit(0, res, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}, nil); err != nil {
			return "", fmt.Errorf("set %s: %w", r.Type, err)
		}
	}
	if p.OOMScoreAdj != nil {
		adj := clampOOMScoreAdj(*p.OOMScoreAdj)
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(adj)), 0); err != nil {
			return "", fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// Like runc, a missing working directory is created (as root, before the switch).
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return "", fmt.Errorf("create working directory %s: %w", cwd, err)
	}
	// Security context (DESIGN section 6, step 6): no_new_privs, the seccomp filter (while
	// CAP_SYS_ADMIN is still held: without no_new_privs the kernel requires it), then the
	// bounding set drop, the user switch and the capability sets.
	if err := setNoNewPrivs(p); err != nil {
		return "", err
	}
	if err := seccomp.Apply(filter); err != nil {
		return "", err
	}
	if err := switchUserWithCaps(p); err != nil {
		return "", err
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	}
	if err := unix.Chdir(cwd); err != nil {
		return "", fmt.Errorf("chdir to working directory %s: %w", cwd, err)
	}
	return lookPath(p.Args[0], p.Env)
}

// setUser switches to the spec's user. syscall's Setgroups/Setgid/Setuid apply to every
// thread of the process (the Go runtime broadcasts them), unlike the raw system calls.
func setUser(u specs.User) error {
	gids := make([]int, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		gids = append(gids, int(g))
	}
	if err := syscall.Setgroups(gids); err != nil {
		return fmt.Errorf("set supplementary groups %v: %w", gids, err)
	}
	if err := syscall.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("set gid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("set uid %d: %w", u.UID, err)
	}
	return nil
}

// lookPath finds the executable with the container's PATH, in the container's root, as the
// container's user: a missing or non-executable program fails the create, not the start.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, checkExecutable(name)
	}
	path := strings.TrimPrefix(DefaultPath, "PATH=")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	var firstErr error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if firstErr == nil && !errors.Is(err, os.ErrNotExist) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("executable file %q not found in $PATH", name)
}

func checkExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("executable %s: %w", p, err)
	}
	if st.IsDir() {
		return fmt.Errorf("executable %s is a directory", p)
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return fmt.Errorf("executable %s: %w", p, err)
	}
	return nil
}

// execProcess replaces this process with the container's program. Every descriptor above
// stdio becomes close-on-exec first (CVE-2024-21626: a leaked handle on a host directory,
// such as a cgroup dir, lets the program escape the rootfs through /proc/self/fd); the sync
// socket thereby closes on success, which is how the parent learns the exec happened.
// It returns only on failure.
func execProcess(argv0 string, p *specs.Process) error {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	if err := syscall.Exec(argv0, p.Args, p.Env); err != nil {
		return fmt.Errorf("exec %s: %w", argv0, err)
	}
	return nil
}
