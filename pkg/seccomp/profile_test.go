package seccomp

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseProfilePath(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Profile
		invalid bool
	}{
		{"", Profile{Kind: Unconfined}, false},
		{"unconfined", Profile{Kind: Unconfined}, false},
		{"runtime/default", Profile{Kind: RuntimeDefault}, false},
		{"docker/default", Profile{Kind: RuntimeDefault}, false},
		{"localhost//etc/p.json", Profile{Kind: Localhost, Path: "/etc/p.json"}, false},
		{"bogus", Profile{}, true},
	} {
		got, err := ParseProfilePath(tc.in)
		if (err != nil) != tc.invalid || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v, invalid=%v", tc.in, got, err, tc.want, tc.invalid)
		}
	}
}

// TestRuntimeDefault runs the default profile: what containerd and Docker allow and deny,
// including the rules that depend on the container's capabilities.
func TestRuntimeDefault(t *testing.T) {
	withAdmin := append(defaultCaps(), "CAP_SYS_ADMIN")
	for _, goarch := range []string{"amd64", "arm64"} {
		native, _, _ := abis(goarch)
		for _, tc := range []struct {
			name string
			caps []string
			call string
			args [6]uint64
			want uint32
		}{
			{"read", defaultCaps(), "read", [6]uint64{}, retAllow},
			{"unshare", defaultCaps(), "unshare", [6]uint64{unix.CLONE_NEWNS}, retEPERM},
			{"mount", defaultCaps(), "mount", [6]uint64{}, retEPERM},
			{"unshare with SYS_ADMIN", withAdmin, "unshare", [6]uint64{unix.CLONE_NEWNS}, retAllow},
			{"mount with SYS_ADMIN", withAdmin, "mount", [6]uint64{}, retAllow},
			{"clone3", defaultCaps(), "clone3", [6]uint64{}, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
			{"personality linux", defaultCaps(), "personality", [6]uint64{0}, retAllow},
			{"personality other", defaultCaps(), "personality", [6]uint64{1}, retEPERM},
			{"reboot", defaultCaps(), "reboot", [6]uint64{}, retEPERM},
		} {
			t.Run(goarch+"/"+tc.name, func(t *testing.T) {
				prof, err := Resolve(Profile{Kind: RuntimeDefault}, tc.caps)
				if err != nil {
					t.Fatal(err)
				}
				vm, _ := compileVM(t, prof, goarch)
				c := call{nr: nr(t, native.sysnum, tc.call), arch: native.audit, args: tc.args}
				if got := run(t, vm, c); got != tc.want {
					t.Errorf("got %#x, want %#x", got, tc.want)
				}
			})
		}
	}
}

func TestResolveLocalhost(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}`)
	empty := write("empty.json", `{}`)
	bad := write("bad.json", `{"defaultAction": `)
	badAction := write("action.json", `{"defaultAction": "SCMP_ACT_NOPE"}`)
	for _, tc := range []struct {
		name    string
		path    string
		wantNil bool
		invalid bool
	}{
		{"good", good, false, false},
		{"empty allows all", empty, true, false},
		{"missing", filepath.Join(dir, "missing.json"), false, true},
		{"relative", "good.json", false, true},
		{"bad json", bad, false, true},
		{"bad action", badAction, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(Profile{Kind: Localhost, Path: tc.path}, defaultCaps())
			if tc.invalid {
				if !errors.Is(err, ErrInvalidProfile) {
					t.Fatalf("got %v, want ErrInvalidProfile", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != tc.wantNil {
				t.Fatalf("got %+v, want nil=%v", got, tc.wantNil)
			}
		})
	}
	if got, err := Resolve(Profile{Kind: Unconfined}, nil); got != nil || err != nil {
		t.Errorf("unconfined: got %+v, %v", got, err)
	}
}

func BenchmarkCompileRuntimeDefault(b *testing.B) {
	prof, err := Resolve(Profile{Kind: RuntimeDefault}, defaultCaps())
	if err != nil {
		b.Fatal(err)
	}
	var n int
	for b.Loop() {
		prog, err := Compile(prof, "amd64")
		if err != nil {
			b.Fatal(err)
		}
		n = len(prog)
	}
	b.ReportMetric(float64(n), "insns")
}

func BenchmarkResolveAndCompileRuntimeDefault(b *testing.B) {
	for b.Loop() {
		prof, err := Resolve(Profile{Kind: RuntimeDefault}, defaultCaps())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Compile(prof, "amd64"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunRuntimeDefault is the cost of the filter per system call, averaged over the
// x86_64 call numbers 0-449, in the interpreter (the kernel JIT-compiles it, so this only
// compares programs).
func BenchmarkRunRuntimeDefault(b *testing.B) {
	prof, err := Resolve(Profile{Kind: RuntimeDefault}, defaultCaps())
	if err != nil {
		b.Fatal(err)
	}
	vm, _ := compileVM(b, prof, "amd64")
	var ins [][]byte
	for n := range uint32(450) {
		ins = append(ins, call{nr: n, arch: unix.AUDIT_ARCH_X86_64}.bytes())
	}
	i := 0
	for b.Loop() {
		if _, err := vm.Run(ins[i%len(ins)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
