package imagebuild

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// fakeRootfs is a tiny tree with every feature the real images rely on.
func fakeRootfs(t *testing.T) *Tree {
	t.Helper()
	tr := NewTree()
	steps := []error{
		tr.AddDir("/tmp", 0o1777, 0, 0),
		tr.AddFile("/bin/busybox", []byte("#!fake busybox\n"), 0o755, 0, 0),
		tr.AddHardlink("/bin/sh", "/bin/busybox"),
		tr.AddHardlink("/bin/ls", "/bin/busybox"),
		tr.AddFile("/usr/local/bin/nnp", []byte("setuid"), 0o4755, 0, 0),
		tr.AddFile("/home/user/file", []byte("owned"), 0o640, 1000, 50000),
		tr.AddSymlink("/var/log/app.log", "/dev/stdout"),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func buildFake(t *testing.T, kind ManifestKind) v1.Hash {
	t.Helper()
	layer, err := fakeRootfs(t).Layer()
	if err != nil {
		t.Fatal(err)
	}
	item, err := Build(ImageSpec{
		Layers: []LayerSpec{{Layer: layer, CreatedBy: "fake rootfs"}},
		Config: v1.Config{Cmd: []string{"sh"}, User: "1000"},
		Kind:   kind,
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := item.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBuildIsReproducible(t *testing.T) {
	kinds := []ManifestKind{DockerManifestList, OCIIndex, DockerManifest, OCIManifest}
	seen := map[v1.Hash]ManifestKind{}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			a, b := buildFake(t, kind), buildFake(t, kind)
			if a != b {
				t.Fatalf("two builds differ: %s != %s", a, b)
			}
			if other, dup := seen[a]; dup {
				t.Fatalf("kind %s has the same digest as %s", kind, other)
			}
			seen[a] = kind
		})
	}
}

type tarEntry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
}

func readLayer(t *testing.T, l v1.Layer) (map[string]tarEntry, []string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]tarEntry{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, Epoch)
		}
		got[h.Name] = tarEntry{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid, link: h.Linkname}
		order = append(order, h.Name)
	}
	return got, order
}

func TestLayerKeepsLinksOwnersAndModes(t *testing.T) {
	layer, err := fakeRootfs(t).Layer()
	if err != nil {
		t.Fatal(err)
	}
	got, order := readLayer(t, layer)
	tests := []struct {
		name string
		want tarEntry
	}{
		{"tmp/", tarEntry{typ: tar.TypeDir, mode: 0o1777}},
		{"bin/", tarEntry{typ: tar.TypeDir, mode: 0o755}},
		// bin/busybox sorts first of its inode, so it holds the data.
		{"bin/busybox", tarEntry{typ: tar.TypeReg, mode: 0o755}},
		{"bin/ls", tarEntry{typ: tar.TypeLink, mode: 0o755, link: "bin/busybox"}},
		{"bin/sh", tarEntry{typ: tar.TypeLink, mode: 0o755, link: "bin/busybox"}},
		{"usr/local/bin/nnp", tarEntry{typ: tar.TypeReg, mode: 0o4755}},
		{"home/user/file", tarEntry{typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 50000}},
		{"var/log/app.log", tarEntry{typ: tar.TypeSymlink, mode: 0o777, link: "/dev/stdout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := got[tc.name]
			if !ok {
				t.Fatalf("missing from layer; have %v", order)
			}
			if e != tc.want {
				t.Fatalf("got %+v, want %+v", e, tc.want)
			}
		})
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Fatalf("entries not sorted: %q before %q", order[i-1], order[i])
		}
	}
}

func TestResolve(t *testing.T) {
	tr := NewTree()
	for _, err := range []error{
		tr.AddFile("/lib/x86_64-linux-gnu/libc.so.6", []byte("libc"), 0o644, 0, 0),
		tr.AddSymlink("/lib64/ld.so", "../lib/x86_64-linux-gnu/libc.so.6"),
		tr.AddSymlink("/usr/lib", "/lib"),
		tr.AddSymlink("/loop", "/loop"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "/lib64/ld.so", want: "/lib/x86_64-linux-gnu/libc.so.6"},
		{in: "/usr/lib/x86_64-linux-gnu/libc.so.6", want: "/lib/x86_64-linux-gnu/libc.so.6"},
		{in: "/usr/lib/../lib64/ld.so", want: "/lib/x86_64-linux-gnu/libc.so.6"},
		{in: "/loop", wantErr: true},
	}
	for _, tc := range tests {
		got, err := tr.Resolve(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want && !tc.wantErr {
			t.Errorf("Resolve(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestLayoutRoundTrip(t *testing.T) {
	layer, err := fakeRootfs(t).Layer()
	if err != nil {
		t.Fatal(err)
	}
	var items []Tagged
	want := map[string]v1.Hash{}
	for _, tc := range []struct {
		ref  string
		kind ManifestKind
	}{
		{"example.com/a/docker-list:1", DockerManifestList},
		{"example.com/a/oci-index:1", OCIIndex},
		{"example.com/a/oci-index:2", OCIIndex},
		{"example.com/b/plain:latest", DockerManifest},
	} {
		item, err := Build(ImageSpec{Layers: []LayerSpec{{Layer: layer}}, Kind: tc.kind})
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, Tagged{Ref: tc.ref, Item: item})
		if want[tc.ref], err = item.Digest(); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(dir, items); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(want) {
		t.Fatalf("read %d refs, want %d", len(back), len(want))
	}
	for _, it := range back {
		d, err := it.Item.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if d != want[it.Ref] {
			t.Errorf("%s: digest %s, want %s", it.Ref, d, want[it.Ref])
		}
	}
}

func TestAddLibrariesFromHost(t *testing.T) {
	// A real dynamic ELF with its real libraries; the host is only a source
	// of bytes here, the resolution runs on the in-memory trees.
	const bin = "/bin/true"
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Skipf("no %s on this machine: %v", bin, err)
	}
	interp, needed, ok, err := elfDeps(data)
	if err != nil || !ok || interp == "" {
		t.Skipf("%s is not a dynamic ELF (interp %q, ok %v, err %v)", bin, interp, ok, err)
	}
	pool := NewTree()
	addHost := func(p string) {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatalf("resolve host %s: %v", p, err)
		}
		b, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		if err := pool.AddFile(p, b, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	addHost(interp)
	for _, so := range needed {
		found := false
		for _, d := range LibDirs {
			if _, err := os.Stat(filepath.Join(d, so)); err == nil {
				addHost(filepath.Join(d, so))
				found = true
				break
			}
		}
		if !found {
			t.Skipf("host has no %s in the standard directories", so)
		}
	}
	img := NewTree()
	if err := img.AddFile("/bin/true", data, 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := AddLibraries(img, pool, []string{"/bin/true"}); err != nil {
		t.Fatal(err)
	}
	if img.Get(interp) == nil {
		t.Errorf("interpreter %s not copied", interp)
	}
	for _, so := range needed {
		if _, ok := findLib(img, so); !ok {
			t.Errorf("library %s not copied", so)
		}
	}
	binOnly := NewTree()
	if err := binOnly.AddFile("/bin/true", data, 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := AddLibraries(NewTree(), NewTree(), []string{"/bin/true"}, binOnly); err == nil {
		t.Error("resolution against an empty pool succeeded")
	}
}
