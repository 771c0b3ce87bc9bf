package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/v1"

	"github.com/cri-mini/cri-mini/pkg/store"
)

// TestUseBlocksRemove checks that an image in use by a container being created (Use, not
// yet visible to InUse) cannot be removed, sequentially and in a bounded race where every
// create that got the image must find all its layer directories until it releases it.
func TestUseBlocksRemove(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("a", "a")))
	reg.push(t, "use/img:v1", img)
	ref := reg.host + "/use/img:v1"
	ctx := context.Background()
	s := newTestService(t, func(o *Options) { o.InUse = func(string) bool { return false } })

	tests := []struct {
		name    string
		release bool
		want    error
	}{
		{"held", false, store.ErrFailedPrecondition},
		{"released", true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				t.Fatal(err)
			}
			got, release, err := s.Use(ref)
			if err != nil {
				t.Fatal(err)
			}
			if tc.release {
				release()
				release() // twice is harmless
			} else {
				defer release()
			}
			err = s.Remove(ctx, got.ID)
			if !errors.Is(err, tc.want) && (tc.want != nil || err != nil) {
				t.Fatalf("Remove: %v, want %v", err, tc.want)
			}
		})
	}

	for i := 0; i < 30; i++ {
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			img, release, err := s.Use(ref)
			if errors.Is(err, store.ErrNotFound) {
				return // removed first: the create fails cleanly
			}
			if err != nil {
				t.Errorf("Use: %v", err)
				return
			}
			defer release()
			base, dirs, err := s.LowerDirs(img.ID)
			if err != nil {
				t.Errorf("LowerDirs of an image in use: %v", err)
				return
			}
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(base, d)); err != nil {
					t.Errorf("layer of an image in use: %v", err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.Remove(ctx, ref); err != nil && !errors.Is(err, store.ErrFailedPrecondition) {
				t.Errorf("Remove: %v", err)
			}
		}()
		wg.Wait()
		if err := s.Remove(ctx, ref); err != nil {
			t.Fatalf("Remove after the race: %v", err)
		}
	}
	s.assertEmpty(t)
}
