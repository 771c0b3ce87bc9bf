package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestImport(t *testing.T) {
	img := imageOf(t, v1.Config{Cmd: []string{"imported"}},
		layerOf(t, compression.GZip, regFile("a", "1")), layerOf(t, compression.ZStd, regFile("b", "2")))
	id := configDigest(t, img)
	dir := t.TempDir()

	dockerTar := filepath.Join(dir, "docker.tar")
	tag, _ := name.NewTag("example.com/imp/app:v1")
	if err := tarball.WriteToFile(dockerTar, tag, img); err != nil {
		t.Fatal(err)
	}
	ociDir := filepath.Join(dir, "oci")
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{annotationOCIRefName: "example.com/imp/oci:v2"})); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	tests := []struct {
		name    string
		path    string
		tags    []string
		digests []string
	}{
		{"docker save", dockerTar, []string{"example.com/imp/app:v1"}, nil},
		{"oci layout", ociDir, []string{"example.com/imp/oci:v2"}, []string{"example.com/imp/oci@" + d.String()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, nil)
			imgs, err := s.Import(context.Background(), tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].ID != id || !slices.Equal(imgs[0].RepoTags, tc.tags) || !slices.Equal(imgs[0].RepoDigests, tc.digests) {
				t.Fatalf("imported %+v", imgs[0])
			}
			if c := readLayerFile(t, s, id, "b"); c != "2" {
				t.Fatalf("b = %q", c)
			}
			if e := mustReadDir(t, s.tmpDir); len(e) != 0 {
				t.Fatalf("temp dir left: %v", e)
			}
		})
	}

	// A layer blob tampered with in the layout fails the import and keeps nothing.
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	if err := os.WriteFile(filepath.Join(ociDir, "blobs", "sha256", ld.Hex), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newTestService(t, nil)
	if _, err := s.Import(context.Background(), ociDir); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("tampered import: %v", err)
	}
	s.assertEmpty(t)
}
