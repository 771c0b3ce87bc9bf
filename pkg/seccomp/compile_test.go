package seccomp

import (
	"errors"
	"fmt"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func blockChmod(arches ...specs.Arch) *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: arches,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"chmod", "fchmodat", "no_such_call"}, Action: specs.ActErrno},
		},
	}
}

func TestCompileArchitectures(t *testing.T) {
	x86 := uint32(unix.AUDIT_ARCH_X86_64)
	i386 := uint32(unix.AUDIT_ARCH_I386)
	chmod64 := nr(t, sysnumX86_64, "chmod")
	chmod32 := nr(t, sysnumX86, "chmod")
	chmodX32 := nr(t, sysnumX32, "chmod")
	readX32 := nr(t, sysnumX32, "read")
	for _, tc := range []struct {
		name   string
		goarch string
		prof   *specs.LinuxSeccomp
		c      call
		want   uint32
	}{
		{"native denied", "amd64", blockChmod(), call{nr: chmod64, arch: x86}, retEPERM},
		{"native allowed", "amd64", blockChmod(), call{nr: nr(t, sysnumX86_64, "read"), arch: x86}, retAllow},
		{"unknown name skipped", "amd64", blockChmod(), call{nr: nr(t, sysnumX86_64, "fchmodat"), arch: x86}, retEPERM},
		{"i386 not listed", "amd64", blockChmod(), call{nr: chmod32, arch: i386}, retKill},
		{"x32 not listed", "amd64", blockChmod(), call{nr: chmodX32, arch: x86}, retKill},
		{"foreign arch", "amd64", blockChmod(), call{nr: chmod64, arch: unix.AUDIT_ARCH_AARCH64}, retKill},
		{"i386 listed denied", "amd64", blockChmod(specs.ArchX86_64, specs.ArchX86, specs.ArchX32), call{nr: chmod32, arch: i386}, retEPERM},
		{"i386 listed allowed", "amd64", blockChmod(specs.ArchX86_64, specs.ArchX86), call{nr: chmod64, arch: i386}, retAllow}, // 90 is not chmod on i386
		{"x32 listed denied", "amd64", blockChmod(specs.ArchX86_64, specs.ArchX32), call{nr: chmodX32, arch: x86}, retEPERM},
		{"x32 listed allowed", "amd64", blockChmod(specs.ArchX86_64, specs.ArchX32), call{nr: readX32, arch: x86}, retAllow},
		{"arm64 native denied", "arm64", blockChmod(), call{nr: nr(t, sysnumAARCH64, "fchmodat"), arch: unix.AUDIT_ARCH_AARCH64}, retEPERM},
		{"arm64 x86 arch", "arm64", blockChmod(specs.ArchX86_64), call{nr: chmod64, arch: x86}, retKill},
		{"arm compat listed", "arm64", blockChmod(specs.ArchAARCH64, specs.ArchARM), call{nr: nr(t, sysnumARM, "chmod"), arch: unix.AUDIT_ARCH_ARM}, retEPERM},
		{"arm compat not listed", "arm64", blockChmod(), call{nr: nr(t, sysnumARM, "chmod"), arch: unix.AUDIT_ARCH_ARM}, retKill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm, _ := compileVM(t, tc.prof, tc.goarch)
			if got := run(t, vm, tc.c); got != tc.want {
				t.Errorf("got %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestCompileActions(t *testing.T) {
	read := nr(t, sysnumX86_64, "read")
	for _, tc := range []struct {
		action specs.LinuxSeccompAction
		errno  *uint
		want   uint32
	}{
		{specs.ActAllow, nil, unix.SECCOMP_RET_ALLOW},
		{specs.ActErrno, nil, unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{specs.ActErrno, uptr(uint(unix.ENOSYS)), unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{specs.ActKill, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillThread, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillProcess, nil, unix.SECCOMP_RET_KILL_PROCESS},
		{specs.ActTrap, nil, unix.SECCOMP_RET_TRAP},
		{specs.ActTrace, uptr(7), unix.SECCOMP_RET_TRACE | 7},
		{specs.ActLog, nil, unix.SECCOMP_RET_LOG},
	} {
		t.Run(fmt.Sprintf("%s/%v", tc.action, tc.errno != nil), func(t *testing.T) {
			// The action as a rule, and as the default action (with its errno).
			vm, _ := compileVM(t, &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls:      []specs.LinuxSyscall{{Names: []string{"read"}, Action: tc.action, ErrnoRet: tc.errno}},
			}, "amd64")
			if got := run(t, vm, call{nr: read, arch: unix.AUDIT_ARCH_X86_64}); got != tc.want {
				t.Errorf("rule: got %#x, want %#x", got, tc.want)
			}
			vm, _ = compileVM(t, &specs.LinuxSeccomp{DefaultAction: tc.action, DefaultErrnoRet: tc.errno}, "amd64")
			if got := run(t, vm, call{nr: read, arch: unix.AUDIT_ARCH_X86_64}); got != tc.want {
				t.Errorf("default: got %#x, want %#x", got, tc.want)
			}
		})
	}
}

// eval is the reference semantics of a condition on a 64-bit argument.
func eval(op specs.LinuxSeccompOperator, v, v2, arg uint64) bool {
	switch op {
	case specs.OpEqualTo:
		return arg == v
	case specs.OpNotEqual:
		return arg != v
	case specs.OpLessThan:
		return arg < v
	case specs.OpLessEqual:
		return arg <= v
	case specs.OpGreaterThan:
		return arg > v
	case specs.OpGreaterEqual:
		return arg >= v
	case specs.OpMaskedEqual:
		return arg&v == v2
	}
	panic(op)
}

// TestCompileArgs checks every operator against the reference on values that differ in
// the high word, the low word, or both.
func TestCompileArgs(t *testing.T) {
	values := []uint64{0, 1, 5, 0x7fffffff, 0xffffffff, 1 << 32, 1<<32 | 5, 1<<32 | 0xffffffff, 2 << 32, 0xffffffff00000000, ^uint64(0)}
	ioctl := nr(t, sysnumX86_64, "ioctl")
	for _, op := range []specs.LinuxSeccompOperator{
		specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
		specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual,
	} {
		for _, v := range values {
			v2 := v & 0xffff0000ffff0005
			vm, _ := compileVM(t, &specs.LinuxSeccomp{
				DefaultAction: specs.ActErrno,
				Syscalls: []specs.LinuxSyscall{{
					Names: []string{"ioctl"}, Action: specs.ActAllow,
					Args: []specs.LinuxSeccompArg{{Index: 2, Value: v, ValueTwo: v2, Op: op}},
				}},
			}, "amd64")
			for _, arg := range values {
				c := call{nr: ioctl, arch: unix.AUDIT_ARCH_X86_64}
				c.args[2] = arg
				c.args[1] = ^arg // another argument must not matter
				want := retEPERM
				if eval(op, v, v2, arg) {
					want = retAllow
				}
				if got := run(t, vm, c); got != want {
					t.Errorf("%s value %#x arg %#x: got %#x, want %#x", op, v, arg, got, want)
				}
			}
		}
	}
}

// TestCompileRuleLogic: conditions of a rule are ANDed, rules of a call ORed, and an
// unconditional rule applies when no conditional one matched.
func TestCompileRuleLogic(t *testing.T) {
	personality := nr(t, sysnumX86_64, "personality")
	socket := nr(t, sysnumX86_64, "socket")
	prof := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActAllow},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.EAFNOSUPPORT)), Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.AF_NETLINK, Op: specs.OpEqualTo},
				{Index: 2, Value: unix.NETLINK_AUDIT, Op: specs.OpEqualTo},
			}},
		},
	}
	vm, _ := compileVM(t, prof, "amd64")
	for _, tc := range []struct {
		nr   uint32
		args [6]uint64
		want uint32
	}{
		{personality, [6]uint64{0}, retAllow},
		{personality, [6]uint64{8}, retAllow},
		{personality, [6]uint64{9}, retEPERM},
		{personality, [6]uint64{1<<32 | 8}, retEPERM},
		{socket, [6]uint64{unix.AF_NETLINK, 0, unix.NETLINK_AUDIT}, unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT)},
		{socket, [6]uint64{unix.AF_NETLINK, 0, unix.NETLINK_ROUTE}, retAllow},
		{socket, [6]uint64{unix.AF_INET, 0, unix.NETLINK_AUDIT}, retAllow},
	} {
		if got := run(t, vm, call{nr: tc.nr, arch: unix.AUDIT_ARCH_X86_64, args: tc.args}); got != tc.want {
			t.Errorf("nr %d args %v: got %#x, want %#x", tc.nr, tc.args, got, tc.want)
		}
	}
}

// TestCompileLongJumps: a call with hundreds of rules puts the next call's test more
// than 255 instructions away, beyond a conditional jump's reach.
func TestCompileLongJumps(t *testing.T) {
	const n = 300
	prof := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	for i := range n {
		prof.Syscalls = append(prof.Syscalls, specs.LinuxSyscall{
			Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: uint64(i) << 20, Op: specs.OpEqualTo}},
		})
	}
	prof.Syscalls = append(prof.Syscalls, specs.LinuxSyscall{Names: []string{"read", "write", "close"}, Action: specs.ActAllow})
	vm, prog := compileVM(t, prof, "amd64")
	long := 0
	for _, f := range prog {
		if f.Code == unix.BPF_JMP|unix.BPF_JA {
			long++
		}
	}
	if long == 0 {
		t.Fatalf("program of %d instructions has no long jump", len(prog))
	}
	ioctl := nr(t, sysnumX86_64, "ioctl")
	for _, tc := range []struct {
		c    call
		want uint32
	}{
		{call{nr: ioctl, args: [6]uint64{0, 0}}, retAllow},
		{call{nr: ioctl, args: [6]uint64{0, (n - 1) << 20}}, retAllow},
		{call{nr: ioctl, args: [6]uint64{0, n << 20}}, retEPERM},
		{call{nr: ioctl, args: [6]uint64{0, 1}}, retEPERM},
		{call{nr: nr(t, sysnumX86_64, "read")}, retAllow},
		{call{nr: nr(t, sysnumX86_64, "close")}, retAllow},
		{call{nr: nr(t, sysnumX86_64, "open")}, retEPERM},
	} {
		tc.c.arch = unix.AUDIT_ARCH_X86_64
		if got := run(t, vm, tc.c); got != tc.want {
			t.Errorf("%+v: got %#x, want %#x", tc.c, got, tc.want)
		}
	}
}

func TestCompileInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		prof *specs.LinuxSeccomp
	}{
		{"nil", nil},
		{"default action", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}},
		{"notify", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}},
		{"operator", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_BOGUS"}}}}}},
		{"index", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(tc.prof, "amd64"); !errors.Is(err, ErrInvalidProfile) {
				t.Errorf("got %v, want ErrInvalidProfile", err)
			}
		})
	}
	if _, err := Compile(blockChmod(), "mips"); err == nil {
		t.Errorf("unsupported architecture compiled")
	}
}

// TestCompileENOSYS: calls newer than every call the profile names get ENOSYS when the
// default action would refuse them, as runc patches libseccomp's filters to do.
func TestCompileENOSYS(t *testing.T) {
	enosys := unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	closeNr := nr(t, sysnumX86_64, "close")
	deny := func(def specs.LinuxSeccompAction, errno *uint) *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{DefaultAction: def, DefaultErrnoRet: errno,
			Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX32},
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"close"}, Action: specs.ActAllow}}}
	}
	for _, tc := range []struct {
		name string
		prof *specs.LinuxSeccomp
		c    call
		want uint32
	}{
		{"named call", deny(specs.ActErrno, nil), call{nr: closeNr}, retAllow},
		{"older call: default", deny(specs.ActErrno, nil), call{nr: nr(t, sysnumX86_64, "write")}, retEPERM},
		{"newer call: ENOSYS", deny(specs.ActErrno, nil), call{nr: closeNr + 1}, enosys},
		{"far newer call: ENOSYS", deny(specs.ActKillProcess, nil), call{nr: 1000}, enosys},
		{"x32 named call", deny(specs.ActErrno, nil), call{nr: nr(t, sysnumX32, "close")}, retAllow},
		{"x32 newer call: ENOSYS", deny(specs.ActErrno, nil), call{nr: nr(t, sysnumX32, "close") + 1}, enosys},
		{"allow default: untouched", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno}}}, call{nr: 1000}, retAllow},
		{"default already ENOSYS", deny(specs.ActErrno, uptr(uint(unix.ENOSYS))), call{nr: 1000}, enosys},
		{"default other errno", deny(specs.ActErrno, uptr(uint(unix.EACCES))), call{nr: 1}, unix.SECCOMP_RET_ERRNO | uint32(unix.EACCES)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm, _ := compileVM(t, tc.prof, "amd64")
			tc.c.arch = unix.AUDIT_ARCH_X86_64
			if got := run(t, vm, tc.c); got != tc.want {
				t.Errorf("got %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		flags   []specs.LinuxSeccompFlag
		want    uintptr
		invalid bool
	}{
		{nil, 0, false},
		{[]specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}, unix.SECCOMP_FILTER_FLAG_LOG, false},
		{[]specs.LinuxSeccompFlag{specs.LinuxSeccompFlagSpecAllow, "SECCOMP_FILTER_FLAG_TSYNC"}, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW, false},
		{[]specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}, 0, true},
		{[]specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_BOGUS"}, 0, true},
	} {
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: tc.flags}
		got, err := Flags(s)
		if tc.invalid {
			if _, cerr := Compile(s, "amd64"); !errors.Is(err, ErrInvalidProfile) || !errors.Is(cerr, ErrInvalidProfile) {
				t.Errorf("%v: got %v / compile %v, want ErrInvalidProfile", tc.flags, err, cerr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: got %#x, %v; want %#x", tc.flags, got, err, tc.want)
		}
	}
}
