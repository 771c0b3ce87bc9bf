package runtime_test

import (
	"context"
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// TestSeccomp: the container's filter is installed in its init and in exec'd processes.
func TestSeccomp(t *testing.T) {
	needRoot(t)
	p := newPod(t, false)
	filter := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"chmod", "fchmodat", "fchmodat2"}, Action: specs.ActErrno}},
	}
	const script = "touch /tmp/f; busybox chmod 600 /tmp/f || echo DENIED; grep Seccomp: /proc/self/status"
	for _, tc := range []struct {
		name   string
		filter *specs.LinuxSeccomp
		want   []string
		absent []string
	}{
		{"filtered", filter, []string{"DENIED", "Seccomp:\t2"}, nil},
		{"unconfined", nil, []string{"Seccomp:\t0"}, []string{"DENIED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := p.create(t, []string{"sh", "-c", script + "; sleep 100"}, func(s *specs.Spec) { s.Linux.Seccomp = tc.filter })
			if err := r.c.Start(context.Background()); err != nil {
				t.Fatalf("start: %v", err)
			}
			out, err := os.CreateTemp(t.TempDir(), "out")
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			ep, err := r.c.Exec(context.Background(), &specs.Process{Args: []string{"sh", "-c", script}, Cwd: "/", Env: []string{"PATH=/bin"}},
				runtime.Stdio{Stdout: out, Stderr: out})
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			if _, err := ep.Wait(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(out.Name())
			_ = r.c.Signal(9)
			initOut, _ := r.wait(t)
			for what, s := range map[string]string{"init": initOut, "exec": string(b)} {
				for _, w := range tc.want {
					if !strings.Contains(s, w) {
						t.Errorf("%s output lacks %q:\n%s", what, w, s)
					}
				}
				for _, a := range tc.absent {
					if strings.Contains(s, a) {
						t.Errorf("%s output has %q:\n%s", what, a, s)
					}
				}
			}
		})
	}
}
