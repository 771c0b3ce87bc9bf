package runtime_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idmap/idmaptest"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// usernsHost is the host uid and gid that root of a test pod's user namespace maps to.
const usernsHost = 1 << 20

// newUsernsPod is newPod with the pod's namespaces owned by a user namespace of its own
// (0 → usernsHost, 65536 ids), as a pod with hostUsers: false has them.
func newUsernsPod(t *testing.T) (*pod, string) {
	t.Helper()
	p := newPod(t, false)
	p.userns = true
	holder := exec.Command("sleep", "60")
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsHost, Size: 65536}}
	holder.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		UidMappings: m, GidMappings: m, GidMappingsEnableSetgroups: true,
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	dir := filepath.Join(t.TempDir(), "userns")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pin := func(kind string) string {
		dst := filepath.Join(dir, kind)
		if err := os.WriteFile(dst, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		src := fmt.Sprintf("/proc/%d/ns/%s", holder.Process.Pid, kind)
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("pin %s: %v", src, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
		return dst
	}
	user := pin("user")
	idmaptest.SkipUnlessIdmappable(t, dir)
	p.paths.NetNS, p.paths.IPCNS, p.paths.UTSNS = pin("net"), pin("ipc"), pin("uts")
	p.paths.UserNS = user
	p.paths.UIDMappings = []runtime.IDMapping{{ContainerID: 0, HostID: usernsHost, Size: 65536}}
	p.paths.GIDMappings = p.paths.UIDMappings
	return p, user
}

// TestContainerInUserns: a container of a pod with a user namespace runs as root of that
// namespace (a host uid without privileges), as pid 1 of its own PID namespace, with proc
// and sysfs mounted, and an exec into it joins the same user namespace.
//
// Its bind mounts come from directories closed to others (as a kubelet pod dir and the
// sandbox's files are): the spawning side opens them, so the init does not need to reach
// them by path.
func TestContainerInUserns(t *testing.T) {
	needRoot(t)
	for _, viaJSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaJSON=%v", viaJSON), func(t *testing.T) {
			p, user := newUsernsPod(t)
			p.viaJSON = viaJSON
			// A volume open to all, in a directory that is not (as a kubelet pod dir).
			vol := filepath.Join(t.TempDir(), "closed", "vol")
			if err := os.MkdirAll(vol, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Dir(vol), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(vol, "data"), []byte("volume-data\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			script := `cat /proc/self/uid_map; echo "pid $$ uid $(id -u)"; readlink /proc/self/ns/user; ls /sys/class/net; cat /data/data /etc/hosts
				touch /data/denied 2>/dev/null || echo plain-bind-read-only; touch /idmapped/made-inside && ls -ln /idmapped/data`
			r := p.create(t, []string{"sh", "-c", script}, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts,
					specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
					// What kubelet's mappings on a mount become: the host's root is the container's.
					specs.Mount{Destination: "/idmapped", Type: "bind", Source: vol, Options: []string{"rbind", "rw", "idmap"}})
			})
			if err := r.c.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			out, st := r.wait(t)
			if st.Code != 0 {
				t.Fatalf("exit %d, output:\n%s", st.Code, out)
			}
			var userIno unix.Stat_t
			if err := unix.Stat(user, &userIno); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				fmt.Sprintf("0 %d 65536", usernsHost), "pid 1 uid 0",
				fmt.Sprintf("user:[%d]", userIno.Ino), "lo", "volume-data", "localhost podhost",
				"plain-bind-read-only", "-rw-r--r-- 1 0 0 12",
			} {
				if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			var made unix.Stat_t
			if err := unix.Stat(filepath.Join(vol, "made-inside"), &made); err != nil || made.Uid != 0 || made.Gid != 0 {
				t.Errorf("file made by the container's root through the idmapped mount: %+v, %v; want owned by host root", made, err)
			}
		})
	}
}

// traversable lets anyone through dir and its ancestors below the temporary directory, as
// the daemon's directories above a container's are (the test's are 0700).
func traversable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
}
