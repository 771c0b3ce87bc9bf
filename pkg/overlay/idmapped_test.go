package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idmap/idmaptest"
)

const hostID = 1 << 20

// whiteouts makes the top layer hide a file of the bottom one (a 0/0 character device) and
// the contents of one of its directories (an opaque directory).
func whiteouts(t *testing.T, top, bottom string) {
	t.Helper()
	for _, d := range []string{filepath.Join(bottom, "opaque"), filepath.Join(top, "opaque")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"gone", "opaque/hidden"} {
		if err := os.WriteFile(filepath.Join(bottom, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(top, "opaque"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "opaque/shown"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMountIdmapped checks an overlay of idmapped layers as the root of the user namespace
// sees and uses it: the layers' root-owned files are its own, what it writes lands in the
// upper dir owned by its host uid, and the layers do not change.
func TestMountIdmapped(t *testing.T) {
	needRoot(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	mounters := []struct {
		name  string
		mount func(Options, string) error
	}{
		{"new mount API", mountNewAPI},
		{"descriptor names", mountLegacy},
	}
	for _, m := range mounters {
		t.Run(m.name, func(t *testing.T) {
			base := idmaptest.TempDir(t)
			const n = 40
			lowers := layers(t, base, n)
			whiteouts(t, lowers[0], lowers[n-1])
			o := Options{Lowers: lowers, Upper: filepath.Join(base, "upper"), Work: filepath.Join(base, "work"), UserNS: ns.File}
			target := filepath.Join(base, "merged")
			for _, d := range []string{o.Upper, o.Work, target} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(d, hostID, hostID); err != nil {
					t.Fatal(err)
				}
			}
			err := mountIdmapped(o, target, m.mount)
			if m.name == "new mount API" && errors.Is(err, unix.EINVAL) {
				t.Skipf("this kernel has no overlay lowerdir+ (Linux 6.8): %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })

			want := fmt.Sprintf("%d:%d", hostID, hostID)
			if got := idmaptest.Owner(t, filepath.Join(target, "own-0")); got != want {
				t.Errorf("a layer's root-owned file from the host: %s, want %s", got, want)
			}
			got := ns.Sh(t, "cd "+target+` && stat -c %u:%g . own-0 shared && cat shared && echo
				ls -A opaque; test ! -e gone && echo gone-hidden
				echo more >> own-0 && touch new && mkdir -p dir/sub && rm own-1 && echo ok`)
			wantIn := fmt.Sprintf("0:0\n0:0\n0:0\n%d\nshown\ngone-hidden\nok", n-1)
			if got != wantIn {
				t.Errorf("inside the namespace:\n%s\nwant:\n%s", got, wantIn)
			}
			for _, f := range []string{"own-0", "new", "dir", "dir/sub"} {
				if got := idmaptest.Owner(t, filepath.Join(o.Upper, f)); got != want {
					t.Errorf("upper/%s written by the namespace's root: owner %s, want %s", f, got, want)
				}
			}
			// The layers: still root's, as they were.
			bottom := lowers[n-1]
			for _, f := range []string{"own-0", "shared", "gone", "opaque/hidden"} {
				if got := idmaptest.Owner(t, filepath.Join(bottom, f)); got != "0:0" {
					t.Errorf("layer file %s now owned by %s", f, got)
				}
			}
			if got, err := os.ReadFile(filepath.Join(bottom, "own-0")); err != nil || string(got) != "x" {
				t.Errorf("layer file own-0 = %q, %v; want it unchanged", got, err)
			}
			if _, err := os.Stat(filepath.Join(lowers[n-2], "own-1")); err != nil {
				t.Errorf("a file removed in the overlay vanished from its layer: %v", err)
			}
		})
	}
}

func TestMountIdmappedErrors(t *testing.T) {
	needRoot(t)
	ns := idmaptest.NewUserNS(t, hostID, 65536)
	netns, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer netns.Close()
	for _, tc := range []struct {
		name    string
		missing bool
		userns  *os.File
		want    string
	}{
		{"a layer missing", true, ns.File, "layer-missing"},
		{"not a user namespace", false, netns, "not a user namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idmaptest.NoLeaks(t)
			base := t.TempDir()
			if tc.missing {
				// The layers before the missing one must idmap for its error to show.
				idmaptest.SkipUnlessIdmappable(t, base)
			}
			o := Options{Lowers: layers(t, base, 3), Upper: filepath.Join(base, "upper"), Work: filepath.Join(base, "work"), UserNS: tc.userns}
			if tc.missing {
				o.Lowers = append(o.Lowers, filepath.Join(base, "layer-missing"))
			}
			target := filepath.Join(base, "merged")
			for _, d := range []string{o.Upper, o.Work, target} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := Mount(o, target)
			if err == nil {
				_ = unix.Unmount(target, unix.MNT_DETACH)
				t.Fatal("mounted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestKernelBefore(t *testing.T) {
	if kernelBefore(2, 6) {
		t.Error("this kernel is older than 2.6")
	}
	if !kernelBefore(1000, 0) {
		t.Error("this kernel is not older than 1000.0")
	}
}
