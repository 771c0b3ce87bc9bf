package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root")
	}
}

// layers makes n lower dirs under base with long names (so that absolute paths would not
// fit in one page), each holding a file of its own and a shared file the top one wins.
func layers(t *testing.T, base string, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		d := filepath.Join(base, fmt.Sprintf("layer-%03d-%s", i, strings.Repeat("x", 60)))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("own-%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "shared"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append([]string{d}, out...) // top layer first
	}
	return out
}

func TestMount(t *testing.T) {
	needRoot(t)
	mounters := []struct {
		name  string
		mount func(Options, string) error
	}{
		{"new mount API", mountNewAPI},
		{"descriptor names", mountLegacy},
	}
	for _, m := range mounters {
		for _, readOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s readOnly=%v", m.name, readOnly), func(t *testing.T) {
				base := t.TempDir()
				const n = 60 // 60 absolute paths of ~130 bytes: about twice a page
				o := Options{Lowers: layers(t, base, n), ReadOnly: readOnly}
				if !readOnly {
					o.Upper, o.Work = filepath.Join(base, "upper"), filepath.Join(base, "work")
					for _, d := range []string{o.Upper, o.Work} {
						if err := os.Mkdir(d, 0o755); err != nil {
							t.Fatal(err)
						}
					}
				}
				target := filepath.Join(base, "merged")
				if err := os.Mkdir(target, 0o755); err != nil {
					t.Fatal(err)
				}
				err := m.mount(o, target)
				if m.name == "new mount API" && errors.Is(err, unix.EINVAL) {
					t.Skipf("this kernel has no overlay lowerdir+ (Linux 6.8): %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Unmount(target, unix.MNT_DETACH)
				got, err := os.ReadFile(filepath.Join(target, "shared"))
				if err != nil || string(got) != fmt.Sprint(n-1) {
					t.Fatalf("shared file = %q, %v; want the top layer's %d", got, err, n-1)
				}
				for _, i := range []int{0, n / 2, n - 1} {
					if _, err := os.Stat(filepath.Join(target, fmt.Sprintf("own-%d", i))); err != nil {
						t.Errorf("layer %d's file missing: %v", i, err)
					}
				}
				werr := os.WriteFile(filepath.Join(target, "new"), []byte("y"), 0o644)
				if readOnly {
					if !errors.Is(werr, unix.EROFS) {
						t.Fatalf("write on a read-only overlay: %v, want EROFS", werr)
					}
					return
				}
				if werr != nil {
					t.Fatal(werr)
				}
				if _, err := os.Stat(filepath.Join(o.Upper, "new")); err != nil {
					t.Fatalf("a write did not land in the upper dir: %v", err)
				}
			})
		}
	}
}

func TestMountRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no lower", Options{Upper: "/u", Work: "/w"}},
		{"upper without work", Options{Lowers: []string{"/l"}, Upper: "/u"}},
	} {
		if err := Mount(tc.o, t.TempDir()); err == nil {
			t.Errorf("%s: mounted", tc.name)
		}
	}
}
