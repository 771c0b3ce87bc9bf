package image

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestMountReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	reg := newTestRegistry(t)
	multi := imageOf(t, v1.Config{},
		layerOf(t, compression.GZip, regFile("etc/a", "low"), regFile("etc/gone", "x"), regFile("d/old", "o")),
		layerOf(t, compression.GZip, regFile("etc/a", "high"), regFile("etc/.wh.gone", ""),
			&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, regFile("d/.wh..wh..opq", ""), regFile("d/new", "n")))
	single := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("only", "one")))
	reg.push(t, "mnt/multi:v1", multi)
	reg.push(t, "mnt/single:v1", single)
	s := newTestService(t, nil)
	ctx := context.Background()
	tests := []struct {
		ref     string
		present map[string]string
		absent  []string
	}{
		{"mnt/multi:v1", map[string]string{"etc/a": "high", "d/new": "n"}, []string{"etc/gone", "d/old", "etc/.wh.gone"}},
		{"mnt/single:v1", map[string]string{"only": "one"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			img, err := s.Pull(ctx, reg.host+"/"+tc.ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			target := t.TempDir()
			if err := s.MountReadOnly(ctx, img.ID, target); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := Unmount(target); err != nil {
					t.Error(err)
				}
			}()
			for f, want := range tc.present {
				if b, err := os.ReadFile(filepath.Join(target, f)); err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", f, b, err, want)
				}
			}
			for _, f := range tc.absent {
				if _, err := os.Lstat(filepath.Join(target, f)); !os.IsNotExist(err) {
					t.Errorf("%s visible (err %v)", f, err)
				}
			}
			err = os.WriteFile(filepath.Join(target, "new-file"), []byte("x"), 0o644)
			if !errors.Is(err, os.ErrPermission) && !isReadOnlyErr(err) {
				t.Errorf("write into read-only mount: %v", err)
			}
		})
	}
}

func isReadOnlyErr(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Err.Error() == "read-only file system"
}
