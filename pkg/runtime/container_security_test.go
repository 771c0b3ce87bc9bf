package runtime_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

const (
	charDev  = unix.S_IFCHR
	blockDev = unix.S_IFBLK
)

func mknod(path string, typ, major, minor uint32) error {
	return unix.Mknod(path, typ|0o600, int(unix.Mkdev(major, minor)))
}

// capMask is the /proc/<pid>/status hex mask of a list of OCI capability names.
func capMask(t *testing.T, names []string) string {
	t.Helper()
	var m uint64
	for _, n := range names {
		found := false
		for _, c := range capability.ListKnown() {
			if "CAP_"+strings.ToUpper(c.String()) == n {
				m |= 1 << uint(c)
				found = true
			}
		}
		if !found {
			t.Fatalf("unknown capability %q", n)
		}
	}
	return fmt.Sprintf("%016x", m)
}

// withSecurity applies sec to a spec built without it, as BuildSpec would have.
func withSecurity(t *testing.T, sec runtime.Security, uid uint32) func(*specs.Spec) {
	return func(s *specs.Spec) {
		ref, err := runtime.BuildSpec(runtime.SpecOptions{
			Container: runtime.ContainerConfig{Command: []string{"sh"}}, Rootfs: "/r",
			User: specs.User{UID: uid, GID: uid}, Security: sec,
		})
		if err != nil {
			t.Fatalf("build spec: %v", err)
		}
		s.Process.User = ref.Process.User
		s.Process.Capabilities = ref.Process.Capabilities
		s.Process.NoNewPrivileges = ref.Process.NoNewPrivileges
		s.Root.Readonly = ref.Root.Readonly
		s.Linux.MaskedPaths = ref.Linux.MaskedPaths
		s.Linux.ReadonlyPaths = ref.Linux.ReadonlyPaths
	}
}

// TestContainerSecurity runs containers with security contexts and reads, from inside, what
// the kernel reports for the init's program and for an exec'd process.
func TestContainerSecurity(t *testing.T) {
	needRoot(t)
	all, err := runtime.AvailableCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	p := newPod(t, false)
	status := `grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status; ` +
		`grep -q . /etc/passwd && echo passwd=full || echo passwd=masked; ` +
		`grep -q . /proc/timer_list 2>/dev/null && echo timers=full || echo timers=masked; ` +
		`touch /rootfs-write 2>/dev/null && echo rootfs=rw || echo rootfs=ro; ` +
		`touch /tmp/x 2>/dev/null && echo tmp=rw || echo tmp=ro; echo checks-done; sleep 100`
	def := runtime.DefaultCapabilities()
	cases := []struct {
		name   string
		sec    runtime.Security
		uid    uint32
		cwd    string
		want   []string
		absent []string
	}{
		{name: "defaults", want: []string{"CapEff:\t" + capMask(t, def), "CapBnd:\t" + capMask(t, def),
			"NoNewPrivs:\t0", "rootfs=rw", "tmp=rw", "timers=masked", "passwd=full"}},
		{name: "drop all add NET_ADMIN, nnp, read-only rootfs",
			sec: runtime.Security{CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"ALL"}, AllCaps: all,
				NoNewPrivs: true, ReadonlyRootfs: true, ReadonlyPaths: []string{"/tmp"}, MaskedPaths: []string{"/etc/passwd"}},
			cwd: "/missing/wd", // created before the rootfs turns read-only
			want: []string{"CapEff:\t" + capMask(t, []string{"CAP_NET_ADMIN"}), "CapPrm:\t" + capMask(t, []string{"CAP_NET_ADMIN"}),
				"CapBnd:\t" + capMask(t, []string{"CAP_NET_ADMIN"}), "NoNewPrivs:\t1", "passwd=masked", "timers=full", "rootfs=ro", "tmp=ro"}},
		{name: "non-root user", uid: 1000,
			want: []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t" + capMask(t, def)}},
		{name: "non-root with ambient", uid: 1000, sec: runtime.Security{AmbientCaps: []string{"CAP_NET_BIND_SERVICE"}},
			want: []string{"CapEff:\t" + capMask(t, []string{"CAP_NET_BIND_SERVICE"}), "CapAmb:\t" + capMask(t, []string{"CAP_NET_BIND_SERVICE"})}},
		{name: "privileged", sec: runtime.Security{Privileged: true, AllCaps: all, HostDevDir: t.TempDir()},
			want: []string{"CapEff:\t" + capMask(t, all), "CapBnd:\t" + capMask(t, all)}, absent: []string{"timers=masked"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var spec *specs.Spec
			r := p.create(t, []string{"sh", "-c", status}, func(s *specs.Spec) {
				withSecurity(t, tc.sec, tc.uid)(s)
				if tc.cwd != "" {
					s.Process.Cwd = tc.cwd
				}
				spec = s
			})
			if err := r.c.Start(context.Background()); err != nil {
				t.Fatalf("start: %v", err)
			}
			waitForOutput(t, r, "checks-done\n")
			// The exec'd process must get the same sets as the container's program.
			out, err := os.CreateTemp(t.TempDir(), "exec")
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			proc := *spec.Process
			proc.Args = []string{"grep", "-E", "^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):", "/proc/self/status"}
			ep, err := r.c.Exec(context.Background(), &proc, runtime.Stdio{Stdout: out, Stderr: out})
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			if _, err := ep.Wait(); err != nil {
				t.Fatal(err)
			}
			execOut, _ := os.ReadFile(out.Name())
			_ = r.c.Signal(unix.SIGKILL)
			initOut, _ := r.wait(t)
			for _, w := range tc.want {
				if !strings.Contains(initOut, w) {
					t.Errorf("container output lacks %q:\n%s", w, initOut)
				}
				if strings.HasPrefix(w, "Cap") && !strings.Contains(string(execOut), w+"\n") {
					t.Errorf("exec output lacks %q:\n%s", w, execOut)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(initOut, a) {
					t.Errorf("container output has %q:\n%s", a, initOut)
				}
			}
		})
	}
}

// waitForOutput waits up to 10 seconds for the container to have written want.
func waitForOutput(t *testing.T, r *run, want string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		b, err := io.ReadAll(io.NewSectionReader(r.out, 0, 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("container did not write %q within 10s", want)
}
