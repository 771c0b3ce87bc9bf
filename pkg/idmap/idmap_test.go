package idmap_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idmap"
	"github.com/cri-mini/cri-mini/pkg/idmap/idmaptest"
)

const hostID = 1 << 20

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("idmapped mounts need root")
	}
}

// attach moves tree onto a new directory under dir, as a container init would, and closes
// it; Cleanup detaches the mount.
func attach(t *testing.T, tree *os.File, dir string) string {
	t.Helper()
	target := filepath.Join(dir, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if err := unix.MoveMount(int(tree.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatalf("move_mount to %s: %v", target, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	return target
}

// rootOwnedSource is a root-owned 0700 directory (closed to the namespace's root on the
// host) holding a root-owned file.
func rootOwnedSource(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestCloneIdmapped(t *testing.T) {
	needRoot(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	dir := idmaptest.TempDir(t)
	src := rootOwnedSource(t, dir)
	tree, err := idmap.CloneIdmapped(src, ns.File, false)
	if err != nil {
		t.Fatal(err)
	}
	target := attach(t, tree, dir)

	if got, want := idmaptest.Owner(t, filepath.Join(target, "file")), "1048576:1048576"; got != want {
		t.Errorf("root's file through the idmapped mount, from the host: %s, want %s", got, want)
	}
	got := ns.Sh(t, "cd "+target+" && stat -c %u:%g . file && echo data >> file && touch new && mkdir newdir && cat file")
	if want := "0:0\n0:0\nhostdata"; got != want {
		t.Errorf("inside the namespace: %q, want %q", got, want)
	}
	for _, n := range []string{"file", "new", "newdir"} {
		if got := idmaptest.Owner(t, filepath.Join(src, n)); got != "0:0" {
			t.Errorf("%s written by the namespace's root is owned by %s on the host, want 0:0", n, got)
		}
	}
	if _, err := ns.TrySh("ls " + src); err == nil {
		t.Error("the namespace's root can walk the 0700 source itself: the test proves nothing about reaching it through the tree")
	}
}

func TestCloneIdmappedRecursive(t *testing.T) {
	needRoot(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	dir := idmaptest.TempDir(t)
	src := rootOwnedSource(t, dir)
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(sub, "on-tmpfs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, recursive := range []bool{false, true} {
		tree, err := idmap.CloneIdmapped(src, ns.File, recursive)
		if err != nil {
			t.Fatalf("recursive=%v: %v", recursive, err)
		}
		d := filepath.Join(dir, map[bool]string{false: "plain", true: "rec"}[recursive])
		if err := os.Mkdir(d, 0o711); err != nil {
			t.Fatal(err)
		}
		target := attach(t, tree, d)
		out, err := ns.TrySh("stat -c %u:%g " + filepath.Join(target, "sub/on-tmpfs") + " && touch " + filepath.Join(target, "sub/new"))
		if !recursive {
			if err == nil {
				t.Errorf("a non-recursive clone shows the tmpfs below it: %s", out)
			}
			continue
		}
		if err != nil || out != "0:0" {
			t.Fatalf("the tmpfs submount inside the namespace: %q, %v; want 0:0", out, err)
		}
		if got := idmaptest.Owner(t, filepath.Join(sub, "new")); got != "0:0" {
			t.Errorf("a file created on the idmapped tmpfs is owned by %s on the host, want 0:0", got)
		}
	}
}

func TestClone(t *testing.T) {
	needRoot(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	dir := idmaptest.TempDir(t)
	src := rootOwnedSource(t, dir)
	if err := os.Chmod(filepath.Join(src, "file"), 0o666); err != nil {
		t.Fatal(err)
	}
	tree, err := idmap.Clone(src, false)
	if err != nil {
		t.Fatal(err)
	}
	target := attach(t, tree, dir)
	if err := os.Chmod(target, 0o755); err != nil { // the clone's root is src itself, 0700
		t.Fatal(err)
	}
	// Not idmapped: host root is unmapped in the namespace (the overflow id, 65534).
	if got := ns.Sh(t, "stat -c %u:%g "+filepath.Join(target, "file")); got != "65534:65534" {
		t.Errorf("root's file through a plain clone, inside the namespace: %s, want 65534:65534", got)
	}
	if got := idmaptest.Owner(t, filepath.Join(target, "file")); got != "0:0" {
		t.Errorf("from the host: %s, want 0:0", got)
	}
}

// TestErrors checks that every refusal names what was refused and leaves no descriptor or
// mount behind.
func TestErrors(t *testing.T) {
	needRoot(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	netns, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer netns.Close()
	initUserNS, err := os.Open("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	defer initUserNS.Close()
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name      string
		src       string
		userns    *os.File
		recursive bool
		want      []string
	}{
		{"missing source", missing, ns.File, false, []string{missing, "no such file"}},
		{"procfs", "/proc", ns.File, false, []string{"/proc", "proc", "does not support idmapped mounts"}},
		{"sysfs", "/sys", ns.File, false, []string{"/sys", "sysfs", "does not support idmapped mounts"}},
		{"recursive over procfs", "/", ns.File, true, []string{"or a mount below it", "does not support idmapped mounts"}},
		{"not a user namespace", t.TempDir(), netns, false, []string{"is not a user namespace"}},
		{"the initial user namespace", t.TempDir(), initUserNS, false, []string{"operation not permitted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idmaptest.NoLeaks(t)
			tree, err := idmap.CloneIdmapped(tc.src, tc.userns, tc.recursive)
			if err == nil {
				tree.Close()
				t.Fatal("idmapped")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	t.Run("OpenUserNS of a network namespace", func(t *testing.T) {
		idmaptest.NoLeaks(t)
		if f, err := idmap.OpenUserNS("/proc/self/ns/net"); err == nil {
			f.Close()
			t.Fatal("opened")
		}
	})
}

func TestOpenUserNS(t *testing.T) {
	needRoot(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	f, err := idmap.OpenUserNS(ns.File.Name())
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
