package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idmap/idmaptest"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

const hostID = 1 << 20

var hostOwner = fmt.Sprintf("%d:%d", hostID, hostID)

func needRootOnly(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root")
	}
}

// usernsLayers makes two root-owned layers under a traversable base: "bottom" with a nested
// directory and a file the top layer whites out, "top" with a file of its own.
func usernsLayers(t *testing.T) string {
	t.Helper()
	base := idmaptest.TempDir(t)
	files := map[string]string{"bottom/etc/deep/conf": "bottom", "bottom/gone": "", "top/etc/top": "top"}
	for f, content := range files {
		p := filepath.Join(base, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(base, "top/gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	return base
}

// mountUserNS mounts a rootfs for ns; Cleanup unmounts it (even if the test fails before
// removing it).
func mountUserNS(t *testing.T, base string, layers []string, dir string, u runtime.UserNamespace) *runtime.Rootfs {
	t.Helper()
	r, err := runtime.MountRootfsUserNS(base, layers, dir, u)
	if err != nil {
		t.Fatalf("mount rootfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(r.Path, unix.MNT_DETACH) })
	return r
}

func TestMountRootfsUserNS(t *testing.T) {
	needRootOnly(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	base := usernsLayers(t)
	for _, byPath := range []bool{false, true} {
		t.Run(fmt.Sprintf("byPath=%v", byPath), func(t *testing.T) {
			u := runtime.UserNamespace{File: ns.File, UID: hostID, GID: hostID}
			if byPath {
				u = runtime.UserNamespace{Path: ns.File.Name(), UID: hostID, GID: hostID}
			}
			dir := filepath.Join(idmaptest.TempDir(t), "containers", "ctr")
			r := mountUserNS(t, base, []string{"top", "bottom"}, dir, u)

			// Who may reach what: the pod's group passes through dir, nobody else.
			checkMode(t, dir, 0o710, fmt.Sprintf("0:%d", hostID))
			checkMode(t, filepath.Dir(dir), 0o711, "0:0")
			for _, d := range []string{"upper", "work"} {
				if got := idmaptest.Owner(t, filepath.Join(dir, d)); got != hostOwner {
					t.Errorf("%s/ owned by %s, want %s", d, got, hostOwner)
				}
			}
			if got := idmaptest.Owner(t, filepath.Join(r.Path, "etc/deep/conf")); got != hostOwner {
				t.Errorf("an image file from the host: %s, want %s", got, hostOwner)
			}

			got := ns.Sh(t, "cd "+r.Path+` && stat -c %u:%g . etc etc/deep/conf etc/top
				test ! -e gone && echo gone-hidden
				echo more >> etc/deep/conf && touch new && mkdir -p a/b && chmod 000 a && echo ok`)
			if want := "0:0\n0:0\n0:0\n0:0\ngone-hidden\nok"; got != want {
				t.Errorf("inside the namespace:\n%s\nwant:\n%s", got, want)
			}
			for _, f := range []string{"etc/deep/conf", "new", "a", "a/b"} {
				if got := idmaptest.Owner(t, filepath.Join(dir, "upper", f)); got != hostOwner {
					t.Errorf("upper/%s written by the container's root: %s, want %s", f, got, hostOwner)
				}
			}
			layerUnchanged(t, base)

			if err := runtime.RemoveRootfs(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Errorf("container directory after RemoveRootfs: %v", err)
			}
			layerUnchanged(t, base)
		})
	}
}

func checkMode(t *testing.T, path string, mode os.FileMode, owner string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode || idmaptest.Owner(t, path) != owner {
		t.Errorf("%s: mode %#o owner %s, want %#o %s", path, fi.Mode().Perm(), idmaptest.Owner(t, path), mode, owner)
	}
}

func layerUnchanged(t *testing.T, base string) {
	t.Helper()
	for _, f := range []string{"bottom", "bottom/etc/deep", "bottom/etc/deep/conf", "top/etc/top"} {
		if got := idmaptest.Owner(t, filepath.Join(base, f)); got != "0:0" {
			t.Errorf("layer %s owned by %s, want 0:0", f, got)
		}
	}
	if got, err := os.ReadFile(filepath.Join(base, "bottom/etc/deep/conf")); err != nil || string(got) != "bottom" {
		t.Errorf("layer file = %q, %v; want it unchanged", got, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(base, "bottom")); len(ents) != 2 {
		t.Errorf("bottom layer has %d entries, want 2", len(ents))
	}
}

// TestMountRootfsUserNSEmptyImage: an image without layers gets an empty, idmapped lower dir.
func TestMountRootfsUserNSEmptyImage(t *testing.T) {
	needRootOnly(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	dir := filepath.Join(idmaptest.TempDir(t), "ctr")
	r := mountUserNS(t, idmaptest.TempDir(t), nil, dir, runtime.UserNamespace{File: ns.File, UID: hostID, GID: hostID})
	if got := ns.Sh(t, "cd "+r.Path+" && stat -c %u:%g . && mkdir etc && touch etc/x && ls -A"); got != "0:0\netc" {
		t.Errorf("inside the namespace: %q, want 0:0 and etc", got)
	}
	if got := idmaptest.Owner(t, filepath.Join(dir, "upper/etc/x")); got != hostOwner {
		t.Errorf("upper/etc/x: %s, want %s", got, hostOwner)
	}
	if err := runtime.RemoveRootfs(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("container directory after RemoveRootfs: %v", err)
	}
}

// TestMountRootfsUserNSErrors: a refused mount leaves no directory, mount or descriptor.
func TestMountRootfsUserNSErrors(t *testing.T) {
	needRootOnly(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	base := usernsLayers(t)
	u := runtime.UserNamespace{File: ns.File, UID: hostID, GID: hostID}
	for _, tc := range []struct {
		name   string
		layers []string
		u      runtime.UserNamespace
		closed bool // the container's parent directory is 0700
		want   string
	}{
		{"a layer missing", []string{"top", "missing"}, u, false, "missing"},
		{"a layer missing, namespace by path", []string{"top", "missing"}, runtime.UserNamespace{Path: ns.File.Name(), UID: hostID, GID: hostID}, false, "missing"},
		{"not a user namespace", []string{"top"}, runtime.UserNamespace{Path: "/proc/self/ns/net", UID: hostID, GID: hostID}, false, "not a user namespace"},
		{"no such namespace", []string{"top"}, runtime.UserNamespace{Path: "/nonexistent", UID: hostID, GID: hostID}, false, "/nonexistent"},
		{"parent closed to the container's root", []string{"top"}, u, true, "is closed to the container's root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idmaptest.NoLeaks(t)
			parent := filepath.Join(idmaptest.TempDir(t), "containers")
			if tc.closed {
				if err := os.Mkdir(parent, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(parent, "ctr")
			r, err := runtime.MountRootfsUserNS(base, tc.layers, dir, tc.u)
			if err == nil {
				_ = runtime.RemoveRootfs(r.Dir)
				t.Fatal("mounted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Errorf("container directory left behind: %v", err)
			}
		})
	}
}

// TestMountRootfsNoUserNS: the common path is as it was, root's and closed.
func TestMountRootfsNoUserNS(t *testing.T) {
	needRootOnly(t)
	base := usernsLayers(t)
	dir := filepath.Join(t.TempDir(), "ctr")
	r, err := runtime.MountRootfs(base, []string{"top", "bottom"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.RemoveRootfs(dir)
	checkMode(t, dir, 0o700, "0:0")
	for _, p := range []string{filepath.Join(dir, "upper"), filepath.Join(r.Path, "etc/deep/conf")} {
		if got := idmaptest.Owner(t, p); got != "0:0" {
			t.Errorf("%s owned by %s, want 0:0", p, got)
		}
	}
}
