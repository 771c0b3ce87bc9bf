package seccomp

import (
	"math/rand/v2"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// reference evaluates profile s for a call of ABI b directly from the profile, the way
// Compile documents it: ENOSYS above the last named call (restrictive defaults), then
// the first conditional rule whose conditions all hold, then the first unconditional rule,
// then the default action.
func reference(t *testing.T, b abi, s *specs.LinuxSeccomp, c call) uint32 {
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		t.Fatal(err)
	}
	if last, ok := enosysAbove(b, s); ok && c.nr > last {
		return unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	}
	var uncond *uint32
	for _, sc := range s.Syscalls {
		act, _ := action(sc.Action, sc.ErrnoRet)
		for _, name := range sc.Names {
			if n, ok := b.sysnum(name); !ok || n != c.nr {
				continue
			}
			if len(sc.Args) == 0 {
				if uncond == nil {
					uncond = &act
				}
				continue
			}
			all := true
			for _, arg := range sc.Args {
				v := c.args[arg.Index]
				if !b.is64 {
					v = uint64(uint32(v))
				}
				all = all && eval(arg.Op, arg.Value, arg.ValueTwo, v)
			}
			if all {
				return act
			}
		}
	}
	if uncond != nil {
		return *uncond
	}
	return def
}

// TestCompileMatchesReference runs the RuntimeDefault program on every call number of
// each ABI, with argument values the profile's conditions test and random ones.
func TestCompileMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, goarch := range []string{"amd64", "arm64"} {
		prof, err := Resolve(Profile{Kind: RuntimeDefault}, defaultCaps())
		if err != nil {
			t.Fatal(err)
		}
		// Interesting argument values: those the profile compares with.
		var interesting []uint64
		for _, sc := range prof.Syscalls {
			for _, a := range sc.Args {
				interesting = append(interesting, a.Value, a.ValueTwo, a.Value|a.ValueTwo, a.Value+1)
			}
		}
		vm, _ := compileVM(t, prof, goarch)
		native, compat, _ := abis(goarch)
		for _, b := range append([]abi{native}, compat...) {
			if len(selectFor(goarch, prof, b)) == 0 {
				continue
			}
			base := uint32(0)
			if b.arch == specs.ArchX32 {
				base = x32SyscallBit
			}
			for n := base; n < base+600; n++ {
				for range 8 {
					c := call{nr: n, arch: b.audit}
					for i := range c.args {
						if rng.IntN(2) == 0 {
							c.args[i] = interesting[rng.IntN(len(interesting))]
						} else {
							c.args[i] = rng.Uint64() >> (rng.IntN(64))
						}
					}
					want := reference(t, b, prof, c)
					if got := run(t, vm, c); got != want {
						t.Fatalf("%s %s nr %#x args %#x: got %#x, want %#x", goarch, b.arch, n, c.args, got, want)
					}
				}
			}
		}
	}
}

// selectFor reports whether the profile's program for goarch covers ABI b.
func selectFor(goarch string, s *specs.LinuxSeccomp, b abi) []abi {
	sel, _ := selectABIs(goarch, s.Architectures)
	for _, x := range sel {
		if x.arch == b.arch {
			return []abi{x}
		}
	}
	return nil
}
