package seccomp

import (
	"errors"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrInvalidProfile marks a profile that cannot be compiled (bad action, operator,
// argument index) or read.
var ErrInvalidProfile = errors.New("invalid seccomp profile")

// Offsets in struct seccomp_data: nr, arch, instruction_pointer, args[6] (64-bit each,
// little-endian on the architectures supported here, so the low half comes first).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// leafSize is the most system calls tested one after the other: above it the numbers are
// split in halves by a comparison (a binary search tree), so that a call costs about
// log2(n/leafSize) + leafSize tests instead of up to n; every system call of a
// container pays it.
const leafSize = 16

// rule is one rule of one system call: conditions (ANDed) and the action when they hold.
type rule struct {
	action uint32
	args   []specs.LinuxSeccompArg
}

// Compile builds the seccomp BPF program of profile s for a machine of architecture goarch
// (a GOARCH): a check of the audit arch, then per covered ABI the rules for the system
// calls that ABI knows (names it lacks are skipped, as runc does), then the default action.
// Several rules for one system call are ORed, first match wins, unconditional rules last;
// the conditions of one rule are ANDed. Seen from another ABI than those covered (the
// native one and the compat ones the profile lists), a call kills the process (libseccomp's
// bad-arch action kills the thread; the whole process is the cleaner end).
//
// Like runc, a call numbered above every call the profile names gets ENOSYS instead of a
// restrictive default action: it is newer than the profile, and ENOSYS is what makes
// libc fall back to an older call (EPERM would be taken as a real refusal).
func Compile(s *specs.LinuxSeccomp, goarch string) ([]unix.SockFilter, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no profile", ErrInvalidProfile)
	}
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	if _, err := Flags(s); err != nil {
		return nil, err
	}
	if err := validateRules(s.Syscalls); err != nil {
		return nil, err
	}
	sel, err := selectABIs(goarch, s.Architectures)
	if err != nil {
		return nil, err
	}
	var a assembler
	a.load(offArch)
	var x32 *abi
	entries := make([]label, len(sel))
	for i := range sel {
		if sel[i].arch == specs.ArchX32 {
			x32 = &sel[i]
			continue
		}
		entries[i] = a.newLabel()
		a.jump(unix.BPF_JEQ, sel[i].audit, entries[i], next)
	}
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	x32Entry := a.newLabel()
	for i, b := range sel {
		if b.arch == specs.ArchX32 {
			continue
		}
		a.place(entries[i])
		a.load(offNr)
		if b.arch == specs.ArchX86_64 {
			// x32 calls share the x86_64 audit arch and are told apart by a bit in
			// the number: to the x32 rules when covered, else killed like any
			// uncovered ABI (a deny rule must not be bypassed through x32).
			if x32 != nil {
				a.jump(unix.BPF_JGE, x32SyscallBit, x32Entry, next)
			} else {
				native := a.newLabel()
				a.jump(unix.BPF_JGE, x32SyscallBit, next, native)
				a.ret(unix.SECCOMP_RET_KILL_PROCESS)
				a.place(native)
			}
		}
		compileABI(&a, b, s, def)
	}
	if x32 != nil {
		a.place(x32Entry)
		compileABI(&a, *x32, s, def)
	}
	return a.resolve()
}

func validateRules(calls []specs.LinuxSyscall) error {
	for i, sc := range calls {
		if _, err := action(sc.Action, sc.ErrnoRet); err != nil {
			return fmt.Errorf("syscalls[%d] %v: %w", i, sc.Names, err)
		}
		for j, arg := range sc.Args {
			if arg.Index > 5 {
				return fmt.Errorf("%w: syscalls[%d] %v: args[%d]: index %d out of range 0-5", ErrInvalidProfile, i, sc.Names, j, arg.Index)
			}
			switch arg.Op {
			case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
				specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
			default:
				return fmt.Errorf("%w: syscalls[%d] %v: args[%d]: unknown operator %q", ErrInvalidProfile, i, sc.Names, j, arg.Op)
			}
		}
	}
	return nil
}

// action encodes an action as a seccomp return value. errnoRet is the errno of ERRNO
// (EPERM when nil, as runc) and the message of TRACE.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		data = uint32(*errnoRet) & unix.SECCOMP_RET_DATA
	}
	switch a {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | data, nil
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | data, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	}
	return 0, fmt.Errorf("%w: unsupported action %q", ErrInvalidProfile, a)
}

// rulesOf groups the rules by system call number for ABI b, in profile order, with the
// conditional rules of a call before its unconditional ones (an unconditional rule would
// hide them) and nothing after the first unconditional one (it always matches). Calls
// whose only rule is an unconditional one with the default action are left out.
func rulesOf(b abi, calls []specs.LinuxSyscall, def uint32) (map[uint32][]rule, []uint32) {
	cond := map[uint32][]rule{}
	uncond := map[uint32]*rule{}
	for _, sc := range calls {
		act, _ := action(sc.Action, sc.ErrnoRet) // validated
		for _, name := range sc.Names {
			nr, ok := b.sysnum(name)
			if !ok {
				continue
			}
			if len(sc.Args) == 0 {
				if uncond[nr] == nil {
					uncond[nr] = &rule{action: act}
				}
				continue
			}
			cond[nr] = append(cond[nr], rule{action: act, args: sc.Args})
		}
	}
	out := map[uint32][]rule{}
	for nr, rs := range cond {
		out[nr] = rs
	}
	for nr, r := range uncond {
		if r.action == def && len(cond[nr]) == 0 {
			continue
		}
		out[nr] = append(out[nr], *r)
	}
	nrs := make([]uint32, 0, len(out))
	for nr := range out {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)
	return out, nrs
}

// compileABI emits the rules of one ABI; A holds the system call number on entry.
func compileABI(a *assembler, b abi, s *specs.LinuxSeccomp, def uint32) {
	if last, ok := enosysAbove(b, s); ok {
		known := a.newLabel()
		a.jump(unix.BPF_JGT, last, next, known)
		a.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
		a.place(known)
	}
	rules, nrs := rulesOf(b, s.Syscalls, def)
	compileTree(a, b, rules, nrs, def)
}

// compileTree emits the calls nrs (sorted) as a binary search tree whose leaves test up to
// leafSize calls in turn; A holds the number throughout.
func compileTree(a *assembler, b abi, rules map[uint32][]rule, nrs []uint32, def uint32) {
	if len(nrs) > leafSize {
		mid := len(nrs) / 2
		upper := a.newLabel()
		a.jump(unix.BPF_JGE, nrs[mid], upper, next)
		compileTree(a, b, rules, nrs[:mid], def)
		a.place(upper)
		compileTree(a, b, rules, nrs[mid:], def)
		return
	}
	// Calls with one unconditional rule and the same action share their return.
	simple := func(nr uint32) bool { return len(rules[nr]) == 1 && len(rules[nr][0].args) == 0 }
	for i := 0; i < len(nrs); {
		nr := nrs[i]
		if !simple(nr) {
			compileCall(a, b, nr, rules[nr], def)
			i++
			continue
		}
		act := rules[nr][0].action
		j := i
		for j < len(nrs) && simple(nrs[j]) && rules[nrs[j]][0].action == act {
			j++
		}
		hit, miss := a.newLabel(), a.newLabel()
		for k := i; k < j; k++ {
			if k == j-1 {
				a.jump(unix.BPF_JEQ, nrs[k], hit, miss)
			} else {
				a.jump(unix.BPF_JEQ, nrs[k], hit, next)
			}
		}
		a.place(hit)
		a.ret(act)
		a.place(miss)
		i = j
	}
	a.ret(def)
}

// compileCall emits one system call with conditional rules; A holds the number on entry
// and again wherever its test jumps past it (the rules reload A, but end in returns).
func compileCall(a *assembler, b abi, nr uint32, rules []rule, def uint32) {
	skip := a.newLabel()
	a.jump(unix.BPF_JEQ, nr, next, skip)
	matchedAll := false
	for _, r := range rules {
		fail := a.newLabel()
		for _, arg := range r.args {
			compileArg(a, arg, b.is64, fail)
		}
		a.ret(r.action)
		a.place(fail)
		matchedAll = len(r.args) == 0
	}
	if !matchedAll {
		a.ret(def)
	}
	a.place(skip)
}

// enosysAbove returns the highest call number the profile names for ABI b, when calls
// above it are to get ENOSYS: not when the default action lets calls through anyway
// (ALLOW, LOG, TRACE: a tracer handles new calls itself), nor when it already is ENOSYS.
func enosysAbove(b abi, s *specs.LinuxSeccomp) (uint32, bool) {
	switch s.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		return 0, false
	}
	if s.DefaultAction == specs.ActErrno && s.DefaultErrnoRet != nil && *s.DefaultErrnoRet == uint(unix.ENOSYS) {
		return 0, false
	}
	var last uint32
	found := false
	for _, sc := range s.Syscalls {
		for _, name := range sc.Names {
			if nr, ok := b.sysnum(name); ok && nr >= last {
				last, found = nr, true
			}
		}
	}
	return last, found
}

// Flags returns the seccomp(2) filter flags a profile asks for. TSYNC is always used;
// LOG and SPEC_ALLOW are passed on; flags that need a notification listener, which
// cri-mini does not provide, are refused.
func Flags(s *specs.LinuxSeccomp) (uintptr, error) {
	var out uintptr
	for _, f := range s.Flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			out |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			out |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case "SECCOMP_FILTER_FLAG_TSYNC":
		default:
			return 0, fmt.Errorf("%w: unsupported flag %q", ErrInvalidProfile, f)
		}
	}
	return out, nil
}
