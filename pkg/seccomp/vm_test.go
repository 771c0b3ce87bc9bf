package seccomp

import (
	"encoding/binary"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// call is a synthetic struct seccomp_data.
type call struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

// bytes lays the call out for x/net/bpf's VM, whose 32-bit loads read big-endian: each
// word is stored big-endian at the offset the kernel's little-endian layout gives it, so
// the program sees the same word values as in the kernel.
func (c call) bytes() []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], c.nr)
	binary.BigEndian.PutUint32(b[4:], c.arch)
	for i, a := range c.args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	return b
}

// newVM loads a compiled program into x/net/bpf's interpreter.
func newVM(t testing.TB, prog []unix.SockFilter) *bpf.VM {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog))
	for i, f := range prog {
		raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("load program in VM: %v", err)
	}
	return vm
}

func run(t testing.TB, vm *bpf.VM, c call) uint32 {
	t.Helper()
	r, err := vm.Run(c.bytes())
	if err != nil {
		t.Fatalf("run %+v: %v", c, err)
	}
	return uint32(r)
}

func compileVM(t testing.TB, s *specs.LinuxSeccomp, goarch string) (*bpf.VM, []unix.SockFilter) {
	t.Helper()
	prog, err := Compile(s, goarch)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return newVM(t, prog), prog
}

func nr(t testing.TB, f func(string) (uint32, bool), name string) uint32 {
	t.Helper()
	n, ok := f(name)
	if !ok {
		t.Fatalf("no system call %q", name)
	}
	return n
}

func uptr(v uint) *uint { return &v }

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
)
