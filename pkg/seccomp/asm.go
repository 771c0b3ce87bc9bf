package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// label names a position in a program under construction; next is "the instruction that
// follows", which needs no label.
type label int

const next label = -1

// insn is an instruction whose jump targets are labels until the program is resolved.
type insn struct {
	code   uint16
	k      uint32
	jt, jf label // conditional jumps
	mark   label // >= 0: not an instruction, marks where this label is
}

// assembler collects instructions with symbolic forward jumps and resolves them. Classic
// BPF conditional jumps have 8-bit offsets: a target more than 255 instructions away is
// reached through an unconditional jump (32-bit offset) placed right after the test.
type assembler struct {
	prog   []insn
	labels int
}

func (a *assembler) newLabel() label {
	a.labels++
	return label(a.labels - 1)
}

func (a *assembler) place(l label) { a.prog = append(a.prog, insn{mark: l}) }

func (a *assembler) load(off uint32) {
	a.prog = append(a.prog, insn{code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: off, mark: next})
}

func (a *assembler) and(k uint32) {
	a.prog = append(a.prog, insn{code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, k: k, mark: next})
}

func (a *assembler) ret(k uint32) {
	a.prog = append(a.prog, insn{code: unix.BPF_RET | unix.BPF_K, k: k, mark: next})
}

// jump emits "if A <op> k goto jt else goto jf"; op is BPF_JEQ, BPF_JGT or BPF_JGE.
func (a *assembler) jump(op uint16, k uint32, jt, jf label) {
	a.prog = append(a.prog, insn{code: unix.BPF_JMP | op | unix.BPF_K, k: k, jt: jt, jf: jf, mark: next})
}

func isCond(in insn) bool {
	return in.mark == next && in.code&0x07 == unix.BPF_JMP && in.code&0xf0 != unix.BPF_JA
}

// resolve lays the program out. Each conditional jump starts short; one whose target is
// out of reach gets a trampoline and the layout is redone. Growing only lengthens
// distances, so this ends (at most two trampolines per jump).
func (a *assembler) resolve() ([]unix.SockFilter, error) {
	longT := make([]bool, len(a.prog))
	longF := make([]bool, len(a.prog))
	for {
		pos, where := a.layout(longT, longF)
		changed := false
		for i, in := range a.prog {
			if !isCond(in) {
				continue
			}
			if !longT[i] && dist(pos[i], where, in.jt) > 255 {
				longT[i], changed = true, true
			}
			if !longF[i] && dist(pos[i], where, in.jf) > 255 {
				longF[i], changed = true, true
			}
		}
		if !changed {
			return a.emit(pos, where, longT, longF)
		}
	}
}

// layout returns each instruction's position and each label's.
func (a *assembler) layout(longT, longF []bool) ([]int, []int) {
	pos := make([]int, len(a.prog))
	where := make([]int, a.labels)
	p := 0
	for i, in := range a.prog {
		pos[i] = p
		if in.mark >= 0 {
			where[in.mark] = p
			continue
		}
		p++
		if longT[i] {
			p++
		}
		if longF[i] {
			p++
		}
	}
	return pos, where
}

// dist is the offset of a jump at p to l (counted from the next instruction).
func dist(p int, where []int, l label) int {
	if l == next {
		return 0
	}
	return where[l] - p - 1
}

func (a *assembler) emit(pos, where []int, longT, longF []bool) ([]unix.SockFilter, error) {
	var out []unix.SockFilter
	for i, in := range a.prog {
		switch {
		case in.mark >= 0:
			continue
		case isCond(in):
			p := pos[i]
			var tramp []unix.SockFilter
			f := unix.SockFilter{Code: in.code, K: in.k}
			// Trampolines follow the test, in the final layout already: a far side
			// points at its trampoline, a near side keeps its distance, and "next"
			// is the first instruction after the trampolines.
			n := 0
			if longT[i] {
				tramp = append(tramp, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(dist(p+1, where, in.jt))})
				n++
			}
			if longF[i] {
				tramp = append(tramp, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(dist(p+1+n, where, in.jf))})
				n++
			}
			side := func(l label, long bool, trampoline int) int {
				switch {
				case long:
					return trampoline
				case l == next:
					return n
				}
				return dist(p, where, l)
			}
			jt := side(in.jt, longT[i], 0)
			jf := side(in.jf, longF[i], n-1)
			if jt < 0 || jf < 0 || jt > 255 || jf > 255 {
				return nil, fmt.Errorf("internal error: jump offsets %d/%d at %d", jt, jf, p)
			}
			f.Jt, f.Jf = uint8(jt), uint8(jf)
			out = append(out, f)
			out = append(out, tramp...)
		default:
			out = append(out, unix.SockFilter{Code: in.code, K: in.k})
		}
	}
	if len(out) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp program of %d instructions exceeds the kernel's limit of %d", len(out), unix.BPF_MAXINSNS)
	}
	return out, nil
}
