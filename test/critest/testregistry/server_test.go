package main

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/klog/v2/ktesting"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

func TestLocalRef(t *testing.T) {
	tests := []struct {
		ref, want string
	}{
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", "127.0.0.1:5000/e2e-test-images/busybox:1.29-2"},
		{"public.ecr.aws/docker/library/busybox:1", "127.0.0.1:5000/docker/library/busybox:1"},
		{"docker.io/library/busybox:latest", "127.0.0.1:5000/library/busybox:latest"},
		{"gcr.io/k8s-staging-cri-tools/test-image-tags:3", "127.0.0.1:5000/k8s-staging-cri-tools/test-image-tags:3"},
	}
	for _, tc := range tests {
		got, err := localRef("127.0.0.1:5000", tc.ref)
		if err != nil {
			t.Fatalf("localRef(%q): %v", tc.ref, err)
		}
		if got.String() != tc.want {
			t.Errorf("localRef(%q) = %s, want %s", tc.ref, got, tc.want)
		}
	}
	if _, err := localRef("127.0.0.1:5000", "busybox"); err == nil {
		t.Error("a reference without registry and tag was accepted")
	}
}

// writeFakeLayout builds a one-layer image with a setuid file and a hard
// link, published as an index and as a bare manifest.
func writeFakeLayout(t *testing.T) (string, map[string]v1.Hash) {
	t.Helper()
	tr := imagebuild.NewTree()
	for _, err := range []error{
		tr.AddFile("/bin/busybox", []byte("fake"), 0o755, 0, 0),
		tr.AddHardlink("/bin/sh", "/bin/busybox"),
		tr.AddFile("/usr/local/bin/nnp", []byte("setuid"), 0o4755, 0, 0),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	layer, err := tr.Layer()
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]imagebuild.ManifestKind{
		"registry.k8s.io/e2e-test-images/fake:1": imagebuild.DockerManifestList,
		"docker.io/library/fake:latest":          imagebuild.OCIManifest,
	}
	var items []imagebuild.Tagged
	digests := map[string]v1.Hash{}
	for ref, kind := range refs {
		item, err := imagebuild.Build(imagebuild.ImageSpec{Layers: []imagebuild.LayerSpec{{Layer: layer}}, Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		if digests[ref], err = item.Digest(); err != nil {
			t.Fatal(err)
		}
		items = append(items, imagebuild.Tagged{Ref: ref, Item: item})
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := imagebuild.WriteLayout(dir, items); err != nil {
		t.Fatal(err)
	}
	return dir, digests
}

func TestServeAndPull(t *testing.T) {
	dir, digests := writeFakeLayout(t)
	_, tctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(tctx)
	defer cancel()
	s, err := start(ctx, dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	host := s.addr.String()
	tests := []struct {
		ref, local string
	}{
		{"registry.k8s.io/e2e-test-images/fake:1", host + "/e2e-test-images/fake:1"},
		{"docker.io/library/fake:latest", host + "/library/fake:latest"},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			ref, err := name.ParseReference(tc.local)
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Get(ref, remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != digests[tc.ref] {
				t.Fatalf("served digest %s, layout has %s", desc.Digest, digests[tc.ref])
			}
			// remote.Image resolves the index to the linux/amd64 image.
			img, err := remote.Image(ref, remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			checkLayer(t, img)
		})
	}
	missing, err := name.ParseReference(host + "/e2e-test-images/fake:2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(missing, remote.WithContext(ctx)); err == nil {
		t.Error("an unknown tag was served")
	}
}

func checkLayer(t *testing.T, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var sawSetuid, sawLink bool
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "usr/local/bin/nnp":
			sawSetuid = h.Mode&0o4000 != 0 && h.Uid == 0
		case "bin/sh":
			sawLink = h.Typeflag == tar.TypeLink && h.Linkname == "bin/busybox"
		}
	}
	if !sawSetuid {
		t.Error("setuid bit of usr/local/bin/nnp lost")
	}
	if !sawLink {
		t.Error("hard link bin/sh -> bin/busybox lost")
	}
}
