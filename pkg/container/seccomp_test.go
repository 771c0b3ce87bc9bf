package container

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/seccomp"
	"github.com/cri-mini/cri-mini/pkg/store"
)

func TestSetSeccomp(t *testing.T) {
	def := &seccomp.Profile{Kind: seccomp.RuntimeDefault}
	hasUnshare := func(s *specs.LinuxSeccomp) bool {
		for _, r := range s.Syscalls {
			if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, "unshare") {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		caps    []string // nil: the spec has no capability set
		want    bool     // a filter is set
		unshare bool     // the filter allows unshare (CAP_SYS_ADMIN rules)
		invalid bool
	}{
		{name: "unconfined", cfg: Config{}},
		{name: "default", cfg: Config{Seccomp: def}, want: true},
		{name: "default with SYS_ADMIN", cfg: Config{Seccomp: def}, caps: []string{"CAP_SYS_ADMIN"}, want: true, unshare: true},
		{name: "missing localhost file", cfg: Config{Seccomp: &seccomp.Profile{Kind: seccomp.Localhost, Path: filepath.Join(t.TempDir(), "none.json")}}, invalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
			if tc.caps != nil {
				spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: tc.caps}
			}
			err := setSeccomp(spec, tc.cfg)
			if tc.invalid {
				if !errors.Is(err, store.ErrInvalidArgument) {
					t.Fatalf("got %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := spec.Linux.Seccomp != nil; got != tc.want {
				t.Fatalf("filter set: %v, want %v", got, tc.want)
			}
			if tc.want && hasUnshare(spec.Linux.Seccomp) != tc.unshare {
				t.Errorf("unshare allowed: %v, want %v", !tc.unshare, tc.unshare)
			}
		})
	}
}
