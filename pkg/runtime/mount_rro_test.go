package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

func TestBuildSpecRecursiveReadonly(t *testing.T) {
	cases := []struct {
		name    string
		m       runtime.Mount
		rro     bool
		wantErr bool
	}{
		{name: "plain read-only", m: runtime.Mount{ContainerPath: "/m", HostPath: "/h", Readonly: true}},
		{name: "recursive", m: runtime.Mount{ContainerPath: "/m", HostPath: "/h", Readonly: true, RecursiveReadOnly: true}, rro: true},
		{name: "recursive but writable", m: runtime.Mount{ContainerPath: "/m", HostPath: "/h", RecursiveReadOnly: true}, wantErr: true},
		{name: "recursive but slave", m: runtime.Mount{ContainerPath: "/m", HostPath: "/h", Readonly: true, RecursiveReadOnly: true,
			Propagation: runtime.PropagationHostToContainer}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := runtime.BuildSpec(runtime.SpecOptions{
				Container: runtime.ContainerConfig{Command: []string{"sh"}, Mounts: []runtime.Mount{tc.m}}, Rootfs: "/r",
			})
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range s.Mounts {
				if m.Destination == "/m" && slices.Contains(m.Options, "rro") != tc.rro {
					t.Errorf("options %v, want rro: %v", m.Options, tc.rro)
				}
			}
		})
	}
}

// TestRecursiveReadonlyMount binds a host directory holding a tmpfs: only a recursive
// read-only mount makes the tmpfs read-only too.
func TestRecursiveReadonlyMount(t *testing.T) {
	needRoot(t)
	p := newPod(t, false)
	for _, rro := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "recursive"}[rro], func(t *testing.T) {
			host := t.TempDir()
			sub := filepath.Join(host, "tmpfs")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("none", sub, "tmpfs", 0, "size=64k"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
			opts := []string{"rbind", "rprivate", "ro"}
			if rro {
				opts = append(opts, "rro")
			}
			r := p.create(t, []string{"sh", "-c", "touch /m/tmpfs/f && echo sub=rw || echo sub=ro; touch /m/f && echo top=rw || echo top=ro"},
				func(s *specs.Spec) {
					s.Mounts = append(s.Mounts, specs.Mount{Destination: "/m", Type: "bind", Source: host, Options: opts})
				})
			if err := r.c.Start(context.Background()); err != nil {
				t.Fatalf("start: %v", err)
			}
			out, _ := r.wait(t)
			want := map[bool]string{false: "sub=rw", true: "sub=ro"}[rro]
			if !strings.Contains(out, want) || !strings.Contains(out, "top=ro") {
				t.Errorf("output %q, want %s and top=ro", out, want)
			}
		})
	}
}
