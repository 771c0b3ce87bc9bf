// Package idmaptest gives root tests a user namespace to idmap into and a way to look at
// files as its root does.
package idmaptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/idmap"
)

// NS is a user namespace kept alive by a sleeping child, with one uid and one gid mapping:
// 0 in the namespace is host HostID, for Size ids.
type NS struct {
	File   *os.File // its nsfs file, /proc/<pid>/ns/user
	Pid    int
	HostID int
}

// NewUserNS starts the child; Cleanup kills and reaps it.
func NewUserNS(t testing.TB, hostID, size int) *NS {
	t.Helper()
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: size}}
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: m, GidMappings: m}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new user namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &NS{File: f, Pid: cmd.Process.Pid, HostID: hostID}
}

// Sh runs script with sh as root of the namespace (nsenter enters as its uid and gid 0; the
// mount namespace stays the host's) and returns its trimmed output, failing the test on
// error.
func (n *NS) Sh(t testing.TB, script string) string {
	t.Helper()
	out, err := n.TrySh(script)
	if err != nil {
		t.Fatalf("in the user namespace: %s: %v: %s", script, err, out)
	}
	return out
}

// TrySh is Sh returning the error.
func (n *NS) TrySh(script string) (string, error) {
	out, err := exec.Command("nsenter", "--target", fmt.Sprint(n.Pid), "--user", "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TempDir is t.TempDir made traversable (0711) along with its parent, which the testing
// package creates 0700: host uid HostID is "others" there and must walk through them. The
// test is skipped where the directory's filesystem cannot be idmapped (tmpfs before Linux
// 6.3, for one).
func TempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	SkipUnlessIdmappable(t, dir)
	return dir
}

// SkipUnlessIdmappable skips the test when mounts of dir's filesystem cannot be idmapped.
func SkipUnlessIdmappable(t testing.TB, dir string) {
	t.Helper()
	probe := NewUserNS(t, 1<<20, 1)
	if err := idmap.Supported(dir, probe.File); err != nil {
		t.Skipf("mounts of %s cannot be idmapped here: %v", dir, err)
	}
}

// Owner returns "uid:gid" of path as the host sees it.
func Owner(t testing.TB, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// Mounts returns the mount points of this process's mount namespace at or below dir.
func Mounts(t testing.TB, dir string) []string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// OpenFDs returns how many descriptors this process has open.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// NoLeaks checks, when the test ends, that it left open exactly the descriptors it found and
// no mount under its temporary directories (the mount table is shared with the tests of
// other packages, which run at the same time): call it first, before anything the test
// registers for cleanup.
func NoLeaks(t testing.TB) {
	t.Helper()
	tmp := filepath.Dir(t.TempDir()) // the parent of every t.TempDir of this test
	fds, mounts := OpenFDs(t), strings.Join(Mounts(t, tmp), "\n")
	t.Cleanup(func() {
		if n := OpenFDs(t); n != fds {
			t.Errorf("%d descriptors open, %d before", n, fds)
		}
		if m := strings.Join(Mounts(t, tmp), "\n"); m != mounts {
			t.Errorf("mounts changed:\nbefore:\n%s\nafter:\n%s", mounts, m)
		}
	})
}
