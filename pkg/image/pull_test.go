package image

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/image/unpack"
	"github.com/cri-mini/cri-mini/pkg/store"
	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func readLayerFile(t *testing.T, s *testService, id, file string) string {
	t.Helper()
	base, dirs, err := s.LowerDirs(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs { // top first, like overlay
		if b, err := os.ReadFile(filepath.Join(base, d, file)); err == nil {
			return string(b)
		}
	}
	t.Fatalf("%s not found in any layer of %s", file, id)
	return ""
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := newTestRegistry(t)
	cfg := v1.Config{User: "1000:1000", Env: []string{"A=b"}, Entrypoint: []string{"/bin/app"}, Cmd: []string{"--x"},
		WorkingDir: "/srv", StopSignal: "SIGINT", Volumes: map[string]struct{}{"/data": {}}, Labels: map[string]string{"l": "v"}}
	img := imageOf(t, cfg,
		layerOf(t, compression.GZip, regFile("etc/base", "base"), regFile("etc/over", "low")),
		layerOf(t, compression.ZStd, regFile("etc/over", "high")),
		layerOf(t, compression.None, regFile("etc/plain", "plain")))
	manifestDigest := reg.push(t, "test/app:v1", img)
	id := configDigest(t, img)
	s := newTestService(t, nil)
	ctx := context.Background()

	got, err := s.Pull(ctx, reg.host+"/test/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	tag, dig := reg.host+"/test/app:v1", reg.host+"/test/app@"+manifestDigest
	if got.ID != id || !slices.Equal(got.RepoTags, []string{tag}) || !slices.Equal(got.RepoDigests, []string{dig}) {
		t.Fatalf("image %s tags %v digests %v; want %s %v %v", got.ID, got.RepoTags, got.RepoDigests, id, tag, dig)
	}
	if got.User != "1000:1000" || got.Config.StopSignal != "SIGINT" || got.Config.WorkingDir != "/srv" ||
		got.Config.Labels["l"] != "v" || len(got.Layers) != 3 || got.Size == 0 {
		t.Fatalf("image metadata %+v", got)
	}
	for file, want := range map[string]string{"etc/base": "base", "etc/over": "high", "etc/plain": "plain"} {
		if c := readLayerFile(t, s, id, file); c != want {
			t.Errorf("%s = %q, want %q", file, c, want)
		}
	}

	// Every way of naming it finds it.
	for _, ref := range []string{id, strings.TrimPrefix(id, "sha256:"), id[:15], id[7:19], tag, dig} {
		if g, err := s.Get(ref); err != nil || g.ID != id {
			t.Errorf("Get(%q) = %v, %v", ref, g, err)
		}
	}
	for _, ref := range []string{"busybox", "sha256:ffff", reg.host + "/test/app:v2"} {
		if _, err := s.Get(ref); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) err %v, want ErrNotFound", ref, err)
		}
	}
	if l := s.List(tag); len(l) != 1 || l[0].ID != id {
		t.Errorf("List(%s) = %v", tag, l)
	}
	if l := s.List(reg.host + "/other:v1"); len(l) != 0 {
		t.Errorf("List(other) = %v", l)
	}

	// Pull by digest: same image, nothing fetched again.
	reg.resetCounts()
	got, err = s.Pull(ctx, dig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id || len(got.RepoTags) != 1 || len(got.RepoDigests) != 1 {
		t.Fatalf("after digest pull: %+v", got)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		if n := reg.count(d.String()); n != 0 {
			t.Errorf("layer %s fetched %d times on a cached pull", d, n)
		}
	}
	imgFs, rwFs, err := s.FsInfo()
	if err != nil || imgFs.UsedBytes == 0 || imgFs.Inodes == 0 || imgFs.Mountpoint == "" || rwFs.Path == "" {
		t.Fatalf("FsInfo = %+v %+v %v", imgFs, rwFs, err)
	}

	// A fresh service over the same database and root sees the same image.
	s2, err := New(ctx, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := s2.Get(tag); err != nil || g.ID != id || !slices.Equal(g.RepoDigests, got.RepoDigests) {
		t.Fatalf("after reopen: %v %v", g, err)
	}
}

func TestPullIndex(t *testing.T) {
	reg := newTestRegistry(t)
	s := newTestService(t, nil)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	mine := imageOf(t, v1.Config{Cmd: []string{"mine"}}, layerOf(t, compression.GZip, regFile("arch", runtime.GOARCH)))
	theirs := imageOf(t, v1.Config{Cmd: []string{"theirs"}}, layerOf(t, compression.GZip, regFile("arch", other)))
	tests := []struct {
		name      string
		indexType types.MediaType
		imageType types.MediaType
		cfgType   types.MediaType
	}{
		{"oci index", types.OCIImageIndex, types.OCIManifestSchema1, types.OCIConfigJSON},
		{"docker manifest list", types.DockerManifestList, types.DockerManifestSchema2, types.DockerConfigJSON},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conv := func(img v1.Image) v1.Image {
				return mutate.ConfigMediaType(mutate.MediaType(img, tc.imageType), tc.cfgType)
			}
			m, th := conv(mine), conv(theirs)
			// The other platform first, and an attestation-like unknown entry, so that picking
			// the first entry would be wrong.
			idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, tc.indexType),
				mutate.IndexAddendum{Add: th, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
				mutate.IndexAddendum{Add: th, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
				mutate.IndexAddendum{Add: m, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
			)
			ref := fmt.Sprintf("multi/%d:latest", i)
			idxDigest := reg.pushIndex(t, ref, idx)
			got, err := s.Pull(context.Background(), reg.host+"/"+ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != configDigest(t, m) {
				t.Fatalf("pulled %s (cmd %v), want the %s image %s", got.ID, got.Config.Cmd, runtime.GOARCH, configDigest(t, m))
			}
			want := reg.host + "/multi/" + fmt.Sprint(i) + "@" + idxDigest
			if !slices.Contains(got.RepoDigests, want) {
				t.Fatalf("repo digests %v, want the index digest %s", got.RepoDigests, want)
			}
			if c := readLayerFile(t, s, got.ID, "arch"); c != runtime.GOARCH {
				t.Fatalf("layer content %q", c)
			}
		})
	}
}

func TestPullMirror(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("f", "mirrored")))
	reg.push(t, "pause:3.10", img)
	reg.push(t, "library/busybox:latest", img)
	dir := t.TempDir()
	write := func(host, content string) {
		os.MkdirAll(filepath.Join(dir, host), 0o755)
		if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The real servers are unreachable on purpose: only the mirrors can answer.
	write("registry.k8s.io", `server = "http://127.0.0.1:1"
[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
[host."http://`+reg.host+`"]
  capabilities = ["pull", "resolve"]
`)
	write("docker.io", `server = "http://127.0.0.1:1"
[host."http://`+reg.host+`/v2"]
  capabilities = ["pull", "resolve"]
`)
	s := newTestService(t, func(o *Options) { o.RegistryConfigDir = dir })
	for _, ref := range []string{"registry.k8s.io/pause:3.10", "busybox"} {
		got, err := s.Pull(context.Background(), ref, nil)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		want, _ := parseReference(ref)
		if !slices.Contains(got.RepoTags, want.String()) {
			t.Fatalf("%s: tags %v", ref, got.RepoTags)
		}
	}
	if _, err := s.Pull(context.Background(), "gcr.io/nothing/here:v1", nil); err == nil {
		t.Fatal("pull from an unconfigured unreachable registry succeeded")
	}
}

func TestPullAuth(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("secret", "s")))
	reg.push(t, "private/app:v1", img)
	reg.mu.Lock()
	reg.user, reg.pass = "alice", "s3cret"
	reg.mu.Unlock()
	tests := []struct {
		name string
		auth *Auth
		ok   bool
	}{
		{"anonymous", nil, false},
		{"wrong password", &Auth{Username: "alice", Password: "nope"}, false},
		{"username password", &Auth{Username: "alice", Password: "s3cret"}, true},
		{"auth field", &Auth{Auth: base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, nil)
			_, err := s.Pull(context.Background(), reg.host+"/private/app:v1", tc.auth)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				s.assertEmpty(t)
			}
		})
	}
}

func TestPullVerification(t *testing.T) {
	reg := newTestRegistry(t)
	base := layerOf(t, compression.GZip, regFile("a", "a"))
	bad := layerOf(t, compression.GZip, regFile("b", "b"))
	img := imageOf(t, v1.Config{}, base, bad)
	reg.push(t, "corrupt/layer:v1", img)
	badDigest, _ := bad.Digest()

	cfgImg := imageOf(t, v1.Config{Cmd: []string{"cfg"}}, layerOf(t, compression.GZip, regFile("c", "c")))
	reg.push(t, "corrupt/config:v1", cfgImg)
	cfgName, _ := cfgImg.ConfigName()

	// A config whose diffID does not match the layer's content.
	wrongDiff := imageOf(t, v1.Config{}, base, wrongDiffID{layerOf(t, compression.GZip, regFile("d", "d"))})
	reg.push(t, "corrupt/diffid:v1", wrongDiff)

	reg.mu.Lock()
	reg.corrupt[badDigest.String()] = true
	reg.corrupt[cfgName.String()] = true
	reg.mu.Unlock()

	for _, ref := range []string{"corrupt/layer:v1", "corrupt/config:v1", "corrupt/diffid:v1"} {
		t.Run(ref, func(t *testing.T) {
			s := newTestService(t, nil)
			_, err := s.Pull(context.Background(), reg.host+"/"+ref, nil)
			if err == nil {
				t.Fatal("pull of corrupt image succeeded")
			}
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err %v, want ErrDigestMismatch", err)
			}
			s.assertEmpty(t)
		})
	}
}

func TestPullHostileLayers(t *testing.T) {
	reg := newTestRegistry(t)
	sentinel := filepath.Join(t.TempDir(), "sentinel")
	os.MkdirAll(sentinel, 0o755)
	os.WriteFile(filepath.Join(sentinel, "passwd"), []byte("root:x:0:0"), 0o644)
	before := dirState(t, sentinel)
	tests := []struct {
		name  string
		hdrs  []*tar.Header
		entry string
	}{
		{"dotdot", []*tar.Header{regFile("../../../../../../../.."+sentinel+"/x", "p")}, "../"},
		{"absolute", []*tar.Header{regFile(sentinel+"/x", "p")}, sentinel + "/x"},
		{"symlink parent", []*tar.Header{{Name: "a", Typeflag: tar.TypeSymlink, Linkname: sentinel}, regFile("a/passwd", "p")}, "a/passwd"},
		{"hard link to host", []*tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: sentinel + "/passwd"}}, `"h"`},
		{"whiteout dotdot", []*tar.Header{regFile("../.wh.x", "")}, "../.wh.x"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, nil)
			img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("ok", "fine")), layerOf(t, compression.GZip, tc.hdrs...))
			ref := fmt.Sprintf("%s/hostile/%d:v1", reg.host, i)
			reg.push(t, strings.TrimPrefix(ref, reg.host+"/"), img)
			_, err := s.Pull(context.Background(), ref, nil)
			if !errors.Is(err, unpack.ErrUnsafeEntry) || !strings.Contains(err.Error(), tc.entry) {
				t.Fatalf("err = %v, want an unsafe entry error naming %q", err, tc.entry)
			}
			if after := dirState(t, sentinel); after != before {
				t.Fatalf("sentinel dir changed:\n%s\n%s", before, after)
			}
			s.assertEmpty(t)
		})
	}
}

func dirState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %v %d %v\n", p, fi.Mode(), fi.Size(), fi.ModTime())
		}
		return nil
	})
	return b.String()
}

func TestConcurrentPulls(t *testing.T) {
	reg := newTestRegistry(t)
	shared := layerOf(t, compression.GZip, regFile("shared", strings.Repeat("s", 100000)))
	var refs []string
	var imgs []v1.Image
	for i := 0; i < 5; i++ {
		img := imageOf(t, v1.Config{Cmd: []string{fmt.Sprint(i)}}, shared,
			layerOf(t, compression.GZip, regFile("own", fmt.Sprint(i))),
			layerOf(t, compression.ZStd, regFile("more", strings.Repeat(fmt.Sprint(i), 50000))))
		ref := fmt.Sprintf("%s/many/img%d:v1", reg.host, i)
		reg.push(t, strings.TrimPrefix(ref, reg.host+"/"), img)
		refs = append(refs, ref)
		imgs = append(imgs, img)
	}
	reg.resetCounts()
	s := newTestService(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for round := 0; round < 2; round++ {
		for _, ref := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Pull(context.Background(), ref, nil); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(s.List("")); n != 5 {
		t.Fatalf("%d images, want 5", n)
	}
	for _, img := range imgs {
		cfg, _ := img.ConfigName()
		blobs := []string{cfg.String()}
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			blobs = append(blobs, d.String())
		}
		for _, b := range blobs {
			if n := reg.count(b); n != 1 {
				t.Errorf("blob %s fetched %d times, want 1", b, n)
			}
		}
	}
}

func TestPullTimeouts(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("slow", "slow")))
	reg.push(t, "slow/app:v1", img)
	reg.mu.Lock()
	reg.stall = true
	reg.mu.Unlock()
	tests := []struct {
		name     string
		deadline time.Duration
		progress time.Duration
	}{
		{"caller deadline", 300 * time.Millisecond, time.Minute},
		{"no progress", time.Minute, 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, func(o *Options) { o.ProgressTimeout = tc.progress })
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			start := time.Now()
			_, err := s.Pull(ctx, reg.host+"/slow/app:v1", nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v", d)
			}
			// The abandoned download winds down in the background; wait for it, bounded.
			for i := 0; i < 100 && len(mustReadDir(t, s.tmpDir)) > 0; i++ {
				time.Sleep(20 * time.Millisecond)
			}
			s.assertEmpty(t)
		})
	}
}

func mustReadDir(t *testing.T, d string) []os.DirEntry {
	e, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestTagMoveAndRemove(t *testing.T) {
	reg := newTestRegistry(t)
	a := imageOf(t, v1.Config{Cmd: []string{"a"}}, layerOf(t, compression.GZip, regFile("v", "a")))
	b := imageOf(t, v1.Config{Cmd: []string{"b"}}, layerOf(t, compression.GZip, regFile("v", "b")))
	inUse := map[string]bool{}
	var mu sync.Mutex
	s := newTestService(t, func(o *Options) {
		o.InUse = func(id string) bool { mu.Lock(); defer mu.Unlock(); return inUse[id] }
	})
	ctx := context.Background()
	ref := reg.host + "/moving/app:latest"
	reg.push(t, "moving/app:latest", a)
	imgA, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, reg.host+"/moving/app:stable", nil); err == nil {
		t.Fatal("pull of a missing tag succeeded")
	} else if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing tag: %v, want ErrNotFound", err)
	}
	reg.push(t, "moving/app:stable", a)
	if _, err := s.Pull(ctx, reg.host+"/moving/app:stable", nil); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.Get(imgA.ID); len(g.RepoTags) != 2 {
		t.Fatalf("two tags of one image: %v", g.RepoTags)
	}
	reg.push(t, "moving/app:latest", b)
	imgB, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldA, err := s.Get(imgA.ID)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(oldA.RepoTags, ref) || !slices.Contains(imgB.RepoTags, ref) || len(oldA.RepoDigests) != 1 {
		t.Fatalf("tag did not move: old %v %v new %v", oldA.RepoTags, oldA.RepoDigests, imgB.RepoTags)
	}

	mu.Lock()
	inUse[imgB.ID] = true
	mu.Unlock()
	if err := s.Remove(ctx, ref); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Fatalf("remove of an image in use: %v", err)
	}
	mu.Lock()
	inUse[imgB.ID] = false
	mu.Unlock()
	for _, r := range []string{ref, reg.host + "/moving/app:stable", "sha256:" + strings.Repeat("0", 64)} {
		if err := s.Remove(ctx, r); err != nil {
			t.Fatalf("remove %s: %v", r, err)
		}
	}
	if err := s.Remove(ctx, ref); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	s.assertEmpty(t)
}

func TestNewCleansLeftovers(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("f", "x")))
	reg.push(t, "keep/app:v1", img)
	s := newTestService(t, nil)
	ctx := context.Background()
	kept, err := s.Pull(ctx, reg.host+"/keep/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	// What a pull killed half-way leaves: a temp dir, an unrecorded layer dir and a recorded
	// layer no image references.
	os.MkdirAll(filepath.Join(s.tmpDir, "layer-123", "etc"), 0o755)
	os.MkdirAll(filepath.Join(s.layersDir, "999"), 0o755)
	os.MkdirAll(filepath.Join(s.layersDir, "998"), 0o755)
	if err := s.db.Update(func(tx *store.Tx) error {
		return tx.Put(layersBucket, "sha256:orphan", &layer{ChainID: "sha256:orphan", Short: "998"})
	}); err != nil {
		t.Fatal(err)
	}
	s2, err := New(ctx, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := s2.Get(kept.ID); err != nil || len(g.Layers) != 1 {
		t.Fatalf("kept image: %v %v", g, err)
	}
	if e := mustReadDir(t, s2.tmpDir); len(e) != 0 {
		t.Errorf("temp dir not cleaned: %v", e)
	}
	if e := mustReadDir(t, s2.layersDir); len(e) != 1 {
		t.Errorf("layer dirs after cleanup: %v", e)
	}
	if len(s2.layers) != 1 || s2.nextShort <= 1 {
		t.Errorf("layers %v next %d", s2.layers, s2.nextShort)
	}
	if err := s2.Remove(ctx, kept.ID); err != nil {
		t.Fatal(err)
	}
	(&testService{Service: s2, db: s.db}).assertEmpty(t)
}

func BenchmarkPull(b *testing.B) {
	reg := newTestRegistry(b)
	img := imageOf(b, v1.Config{},
		layerOf(b, compression.GZip, regFile("a", strings.Repeat("a", 1<<20))),
		layerOf(b, compression.GZip, regFile("b", strings.Repeat("b", 1<<20))))
	reg.push(b, "bench/app:v1", img)
	ref := reg.host + "/bench/app:v1"
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		s := newTestService(b, nil)
		for b.Loop() {
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				b.Fatal(err)
			}
			if err := s.Remove(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		s := newTestService(b, nil)
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// wrongDiffID is a layer that announces a diffID its content does not have.
type wrongDiffID struct{ v1.Layer }

func (wrongDiffID) DiffID() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, nil
}

// TestRepeatedPullRecordsNothing: a pull that adds no name keeps the recorded image as it is
// (no transaction), while one that adds a tag records it.
func TestRepeatedPullRecordsNothing(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("a", "a")))
	manifestDigest := reg.push(t, "test/same:v1", img)
	reg.push(t, "test/same:v2", img)
	s := newTestService(t, nil)
	ctx := context.Background()
	tag := reg.host + "/test/same:v1"
	first, err := s.Pull(ctx, tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{tag, reg.host + "/test/same@" + manifestDigest} {
		again, err := s.Pull(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Errorf("pull of %s rewrote the image record: %+v", ref, again)
		}
	}
	tagged, err := s.Pull(ctx, reg.host+"/test/same:v2", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{tag, reg.host + "/test/same:v2"}
	if tagged == first || !slices.Equal(tagged.RepoTags, want) {
		t.Fatalf("after a pull by a new tag: tags %v, want %v", tagged.RepoTags, want)
	}
	s2, err := New(ctx, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := s2.Get(tag); err != nil || !slices.Equal(g.RepoTags, want) {
		t.Fatalf("after reopen: %v %v", g, err)
	}
}
