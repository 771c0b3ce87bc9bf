package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

func TestContainerRun(t *testing.T) {
	needRoot(t)
	before := nsSnapshot(t)
	p := newPod(t, false)
	script := `echo pid=$$; hostname; ls /; cat /etc/resolv.conf; cat /proc/1/cgroup; ` +
		`test -e /etc/debian_version && echo HOST-ROOTFS; echo netns=$(readlink /proc/self/ns/net); ` +
		`echo user=$(id -u):$(id -g):$(id -G); echo cwd=$(pwd)`
	cases := []struct {
		name   string
		args   []string
		mutate func(*specs.Spec)
		want   []string // substrings of the output
		absent []string
		code   int
	}{
		{
			name: "environment",
			args: []string{"sh", "-c", script},
			want: []string{"pid=1\n", "podhost\n", "marker-top", "nameserver 10.9.8.7", p.cgroup,
				"netns=" + nsInode(t, p.pins[ns.Net]), "user=0:0:0", "cwd=/\n"},
			absent: []string{"HOST-ROOTFS"},
		},
		{
			name: "user and working dir",
			args: []string{"sh", "-c", script},
			mutate: func(s *specs.Spec) {
				s.Process.User = specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{1234}}
				s.Process.Cwd = "/tmp/work"
			},
			want: []string{"user=65534:65534:", "1234", "cwd=/tmp/work\n"},
		},
		{name: "exit code", args: []string{"sh", "-c", "exit 3"}, code: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := p.create(t, tc.args, tc.mutate)
			if err := r.c.Start(context.Background()); err != nil {
				t.Fatalf("start: %v", err)
			}
			out, st := r.wait(t)
			if st.Code != tc.code || st.Signal != 0 {
				t.Errorf("exit status %+v, want code %d; output:\n%s", st, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(out, a) {
					t.Errorf("output has %q:\n%s", a, out)
				}
			}
		})
	}
	checkNamespacesUnchanged(t, before)
}

func TestContainerKilled(t *testing.T) {
	needRoot(t)
	p := newPod(t, false)
	r := p.create(t, []string{"sleep", "100"}, nil)
	if err := r.c.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := r.c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, st := r.wait(t)
	if st.Signal != syscall.SIGKILL || st.Code != 137 {
		t.Errorf("exit status %+v, want SIGKILL and code 137", st)
	}
}

// A CREATED container must not run its program before Start.
func TestCreatedDoesNotRun(t *testing.T) {
	needRoot(t)
	p := newPod(t, false)
	r := p.create(t, []string{"touch", "/marker-run"}, nil)
	marker := filepath.Join(r.dir, "upper", "marker-run")
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the program ran before Start")
	}
	if err := r.c.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, st := r.wait(t); st.Code != 0 {
		t.Fatalf("exit status %+v", st)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the program did not run after Start: %v", err)
	}
	if err := r.c.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
}

// An image's /etc/hosts -> /host-file must not make the pod's hosts file land on the host.
func TestSymlinkMountTargetStaysInRootfs(t *testing.T) {
	needRoot(t)
	if _, err := os.Lstat("/host-file"); err == nil {
		t.Skip("/host-file exists on this host; the test needs it absent")
	}
	p := newPod(t, true)
	r := p.create(t, []string{"cat", "/etc/hosts"}, nil)
	if _, err := os.Lstat("/host-file"); err == nil {
		t.Fatal("the bind mount target was created on the host")
	}
	if err := r.c.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	out, st := r.wait(t)
	if st.Code != 0 || !strings.Contains(out, "podhost") {
		t.Errorf("status %+v, output %q: want the pod's hosts file through the symlink", st, out)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "upper", "host-file")); err != nil {
		t.Errorf("mount point not created inside the rootfs: %v", err)
	}
}

func TestCreateFails(t *testing.T) {
	needRoot(t)
	p := newPod(t, false)
	cases := []struct {
		name   string
		args   []string
		mutate func(*specs.Spec)
		want   string
	}{
		{name: "missing program", args: []string{"no-such-program"}, want: "not found"},
		{name: "missing bind source", args: []string{"true"}, want: "no-such-source",
			mutate: func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/no-such-source", Options: []string{"rbind"}})
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := nsSnapshot(t)
			_, err := p.tryCreate(t, tc.args, tc.mutate)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create error %v, want one mentioning %q", err, tc.want)
			}
			checkNamespacesUnchanged(t, before)
		})
	}
}

// TestCreateJSON: a container created from the spec's JSON (the monitor's way) is set up
// from the whole spec, and an exec into it gets the spec's seccomp filter once decoded.
func TestCreateJSON(t *testing.T) {
	needRoot(t)
	p := newPod(t, false)
	p.viaJSON = true
	r := p.create(t, []string{"sh", "-c", "echo pid=$$; hostname; grep Seccomp: /proc/self/status; sleep 100"},
		func(s *specs.Spec) {
			s.Process.Cwd = "/tmp/json-cwd"
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"mkdirat", "mkdir"}, Action: specs.ActErrno}}}
		})
	if r.c.Spec != nil {
		t.Error("CreateJSON decoded the spec up front")
	}
	if err := r.c.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ep, err := r.c.Exec(context.Background(), &specs.Process{Args: []string{"sh", "-c", "pwd; mkdir /tmp/x && echo MKDIR-OK; grep Seccomp: /proc/self/status"},
		Cwd: "/tmp/json-cwd", Env: []string{"PATH=/bin"}}, runtime.Stdio{Stdout: out, Stderr: out})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if _, err := ep.Wait(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(b), "/tmp/json-cwd") || strings.Contains(string(b), "MKDIR-OK") || !strings.Contains(string(b), "Seccomp:\t2") {
		t.Errorf("exec did not run with the spec's working dir and seccomp filter:\n%s", b)
	}
	if r.c.Spec == nil || r.c.Spec.Process.Cwd != "/tmp/json-cwd" {
		t.Error("the spec was not decoded for the exec")
	}
	_ = r.c.Signal(9)
	got, _ := r.wait(t)
	for _, w := range []string{"pid=1\n", "podhost\n", "Seccomp:\t2"} {
		if !strings.Contains(got, w) {
			t.Errorf("container output lacks %q:\n%s", w, got)
		}
	}
}

func TestExec(t *testing.T) {
	needRoot(t)
	before := nsSnapshot(t)
	p := newPod(t, false)
	r := p.create(t, []string{"sleep", "100"}, nil)
	if err := r.c.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	cases := []struct {
		name string
		proc specs.Process
		want []string
		code int
	}{
		{name: "ls root", proc: specs.Process{Args: []string{"ls", "/"}, Cwd: "/"}, want: []string{"marker-top", "bin"}},
		{name: "namespaces and user", proc: specs.Process{
			Args: []string{"sh", "-c", "hostname; cat /proc/1/cmdline; echo; id -u; cat /proc/self/cgroup; test -e /etc/debian_version && echo HOST-ROOTFS; exit 5"},
			Cwd:  "/tmp", User: specs.User{UID: 65534, GID: 65534}},
			want: []string{"podhost", "sleep100", "65534", p.cgroup}, code: 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := os.CreateTemp(t.TempDir(), "out")
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			tc.proc.Env = []string{"PATH=/bin"}
			ep, err := r.c.Exec(context.Background(), &tc.proc, runtime.Stdio{Stdout: out, Stderr: out})
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			st, err := ep.Wait()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(out.Name())
			if st.Code != tc.code {
				t.Errorf("exit %+v, want %d; output:\n%s", st, tc.code, b)
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.ReplaceAll(string(b), "\x00", ""), w) {
					t.Errorf("output lacks %q:\n%s", w, b)
				}
			}
			if strings.Contains(string(b), "HOST-ROOTFS") {
				t.Errorf("exec sees the host's rootfs")
			}
		})
	}
	if _, err := r.c.Exec(context.Background(), &specs.Process{Args: []string{"no-such"}, Cwd: "/"}, runtime.Stdio{}); err == nil {
		t.Error("exec of a missing program succeeded")
	}
	checkNamespacesUnchanged(t, before)
}
