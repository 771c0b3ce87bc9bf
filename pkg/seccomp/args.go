package seccomp

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// compileArg emits a test of one argument condition that falls through when it holds and
// jumps to fail when not. Classic BPF works on 32-bit words: a 64-bit argument is compared
// as (high, low) pairs, high half first, unsigned, as libseccomp does. On a 32-bit ABI only
// the low word is the argument (the kernel zero-extends it).
func compileArg(a *assembler, arg specs.LinuxSeccompArg, is64 bool, fail label) {
	lo := uint32(offArgs + 8*arg.Index)
	hi := lo + 4
	v := arg.Value
	vlo, vhi := uint32(v), uint32(v>>32)
	if arg.Op == specs.OpMaskedEqual {
		// Value is the mask, ValueTwo the expected masked value.
		t := arg.ValueTwo
		if is64 {
			a.load(hi)
			a.and(vhi)
			a.jump(unix.BPF_JEQ, uint32(t>>32), next, fail)
		}
		a.load(lo)
		a.and(vlo)
		a.jump(unix.BPF_JEQ, uint32(t), next, fail)
		return
	}
	pass := a.newLabel()
	if is64 {
		a.load(hi)
		switch arg.Op {
		case specs.OpEqualTo:
			a.jump(unix.BPF_JEQ, vhi, next, fail)
		case specs.OpNotEqual:
			a.jump(unix.BPF_JEQ, vhi, next, pass)
		case specs.OpGreaterThan, specs.OpGreaterEqual:
			// high above: holds; high below: fails; equal: decided by the low word.
			a.jump(unix.BPF_JGT, vhi, pass, next)
			a.jump(unix.BPF_JEQ, vhi, next, fail)
		case specs.OpLessThan, specs.OpLessEqual:
			a.jump(unix.BPF_JGT, vhi, fail, next)
			a.jump(unix.BPF_JEQ, vhi, next, pass)
		}
	}
	a.load(lo)
	switch arg.Op {
	case specs.OpEqualTo:
		a.jump(unix.BPF_JEQ, vlo, pass, fail)
	case specs.OpNotEqual:
		a.jump(unix.BPF_JEQ, vlo, fail, pass)
	case specs.OpGreaterThan:
		a.jump(unix.BPF_JGT, vlo, pass, fail)
	case specs.OpGreaterEqual:
		a.jump(unix.BPF_JGE, vlo, pass, fail)
	case specs.OpLessThan:
		a.jump(unix.BPF_JGE, vlo, fail, pass)
	case specs.OpLessEqual:
		a.jump(unix.BPF_JGT, vlo, fail, pass)
	}
	a.place(pass)
}
