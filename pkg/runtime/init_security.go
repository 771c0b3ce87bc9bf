package runtime

import (
	"fmt"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Capability sets and prctl flags are per thread: everything here must run on the thread
// that later calls execve (the init's and the exec helper's locked main thread), and the
// kernel hands that thread's credentials to the new program.

// setNoNewPrivs sets no_new_privs when the spec asks: from then on execve never grants
// privileges (setuid bits, file capabilities), and a seccomp filter may be installed
// without CAP_SYS_ADMIN.
func setNoNewPrivs(p *specs.Process) error {
	if !p.NoNewPrivileges {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}

// switchUserWithCaps drops the bounding set, switches to the spec's user and sets the
// effective, permitted, inheritable and ambient capability sets, in runc's order: the
// bounding set can only be dropped while CAP_SETPCAP is still effective (before the
// switch); PR_SET_KEEPCAPS keeps the permitted set across setuid to a non-root user (the
// kernel clears it otherwise), so the final capset can still grant what the spec lists;
// ambient capabilities are raised last, as they must be in permitted and inheritable. A
// spec without capabilities (written before they were recorded) keeps the old behaviour:
// only the user switch.
func switchUserWithCaps(p *specs.Process) error {
	c := p.Capabilities
	if c == nil {
		return setUser(p.User)
	}
	caps, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := setCapSet(caps, capability.BOUNDING, c.Bounding); err != nil {
		return err
	}
	if err := caps.Apply(capability.BOUNDS); err != nil {
		return fmt.Errorf("drop bounding capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set keepcaps: %w", err)
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keepcaps: %w", err)
	}
	caps.Clear(capability.CAPS | capability.AMBS)
	for _, s := range []struct {
		which capability.CapType
		names []string
	}{
		{capability.EFFECTIVE, c.Effective}, {capability.PERMITTED, c.Permitted},
		{capability.INHERITABLE, c.Inheritable}, {capability.AMBIENT, c.Ambient},
	} {
		if err := setCapSet(caps, s.which, s.names); err != nil {
			return err
		}
	}
	if err := caps.Apply(capability.CAPS | capability.AMBS); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

func setCapSet(caps capability.Capabilities, which capability.CapType, names []string) error {
	list, err := capsFromNames(names)
	if err != nil {
		return err
	}
	caps.Set(which, list...)
	return nil
}
