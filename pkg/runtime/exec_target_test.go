package runtime_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// TestExecIn runs a process in a container known only by its PID and cgroup, and checks
// that a PID that is not the container's (as after PID reuse) is refused.
func TestExecIn(t *testing.T) {
	needRoot(t)
	before := nsSnapshot(t)
	p := newPod(t, false)
	r := p.create(t, []string{"sleep", "100"}, nil)
	startedBy := time.Now()
	if err := r.c.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	cg := r.c.Spec.Linux.CgroupsPath
	cases := []struct {
		name    string
		target  runtime.ExecTarget
		wantErr error // nil: the exec runs
	}{
		{name: "by cgroup", target: runtime.ExecTarget{Pid: r.c.Pid, CgroupPath: cg, Cgroups: p.cgm}},
		{name: "by start time", target: runtime.ExecTarget{Pid: r.c.Pid, StartedBy: startedBy}},
		{name: "by both", target: runtime.ExecTarget{Pid: r.c.Pid, CgroupPath: cg, Cgroups: p.cgm, StartedBy: startedBy}},
		{name: "pid outside the cgroup", target: runtime.ExecTarget{Pid: os.Getpid(), CgroupPath: cg, Cgroups: p.cgm}, wantErr: runtime.ErrNotRunning},
		{name: "pid started later", target: runtime.ExecTarget{Pid: r.c.Pid, StartedBy: startedBy.Add(-time.Hour)}, wantErr: runtime.ErrNotRunning},
		{name: "no way to check", target: runtime.ExecTarget{Pid: r.c.Pid}, wantErr: errAny},
		{name: "no pid", target: runtime.ExecTarget{CgroupPath: cg, Cgroups: p.cgm}, wantErr: errAny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := os.CreateTemp(t.TempDir(), "out")
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			proc := &specs.Process{Args: []string{"sh", "-c", "cat /proc/1/cmdline; exit 4"}, Cwd: "/", Env: []string{"PATH=/bin"}}
			ep, err := runtime.ExecIn(context.Background(), tc.target, proc, runtime.Stdio{Stdout: out, Stderr: out})
			if tc.wantErr != nil {
				if err == nil {
					_, _ = ep.Wait()
					t.Fatal("exec succeeded")
				}
				if tc.wantErr != errAny && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			st, err := ep.Wait()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(out.Name())
			if st.Code != 4 || string(b) != "sleep\x00100\x00" {
				t.Errorf("exit %+v output %q, want 4 and the container's init command line", st, b)
			}
		})
	}
	checkNamespacesUnchanged(t, before)
}

// errAny stands for "some error" in TestExecIn's table.
var errAny = errors.New("any error")
