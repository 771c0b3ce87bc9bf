package seccomp

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// x32SyscallBit marks x32 system calls, which arrive with the x86_64 audit arch.
const x32SyscallBit = 0x40000000

// abi is one system call ABI a filter can cover: its audit arch as seen in
// seccomp_data.arch, its table, and whether its arguments are 64-bit.
type abi struct {
	arch   specs.Arch
	audit  uint32
	sysnum func(string) (uint32, bool)
	is64   bool
}

// abis returns the native ABI of goarch and the others its kernel may run (compat):
// what a filter for that machine can be asked to cover.
func abis(goarch string) (native abi, compat []abi, err error) {
	switch goarch {
	case "amd64":
		return abi{specs.ArchX86_64, unix.AUDIT_ARCH_X86_64, sysnumX86_64, true},
			[]abi{
				{specs.ArchX86, unix.AUDIT_ARCH_I386, sysnumX86, false},
				{specs.ArchX32, unix.AUDIT_ARCH_X86_64, sysnumX32, true},
			}, nil
	case "arm64":
		return abi{specs.ArchAARCH64, unix.AUDIT_ARCH_AARCH64, sysnumAARCH64, true},
			[]abi{{specs.ArchARM, unix.AUDIT_ARCH_ARM, sysnumARM, false}}, nil
	}
	return abi{}, nil, fmt.Errorf("seccomp: unsupported architecture %s", goarch)
}

// selectABIs is the native ABI plus the compat ABIs the profile lists, as libseccomp
// builds a filter: the native one is always there; listed architectures this machine
// cannot run (another CPU family) are ignored.
func selectABIs(goarch string, listed []specs.Arch) ([]abi, error) {
	native, compat, err := abis(goarch)
	if err != nil {
		return nil, err
	}
	out := []abi{native}
	for _, c := range compat {
		for _, l := range listed {
			if l == c.arch {
				out = append(out, c)
				break
			}
		}
	}
	return out, nil
}
