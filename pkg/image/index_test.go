package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/store"
	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestFetchLayerSizeBound checks that a layer blob is never read beyond the size its descriptor
// gives: a registry that sends more (an endless stream in the worst case) fails the pull after
// at most one byte too many, before its content fills the disk.
func TestFetchLayerSizeBound(t *testing.T) {
	content := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(content)
	tarball := tarBytes(t, regFile("big", string(content)))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarball)
	zw.Close()
	blob := gz.Bytes()
	digest := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(blob))}
	diffID := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(tarball))}

	tests := []struct {
		name    string
		size    int64
		wantErr bool
	}{
		{"exact size", int64(len(blob)), false},
		{"size unknown (archive import)", -1, false},
		{"descriptor says less", 1000, true},
		{"descriptor says zero", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, nil)
			src := &countingReader{r: bytes.NewReader(blob)}
			ls := layerSource{digest: digest, size: tc.size, diffID: diffID,
				open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(src), nil }}
			chain := diffID.String()
			s.hold([]string{chain})
			l, err := s.fetchLayer(context.Background(), "sha256:test", chain, ls)
			if tc.wantErr {
				if !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("err = %v, want ErrDigestMismatch", err)
				}
				if got := src.n.Load(); got > tc.size+1 {
					t.Fatalf("read %d bytes of a blob whose descriptor says %d", got, tc.size)
				}
			} else if err != nil || l == nil {
				t.Fatalf("fetchLayer = %v, %v", l, err)
			}
			s.release(context.Background(), []string{chain})
			s.assertEmpty(t)
		})
	}
}

// TestAddLayerDuplicate checks that unpacking one layer several times (a pull that gave up
// leaves its unpack running while a retry starts another) keeps one directory and one record.
func TestAddLayerDuplicate(t *testing.T) {
	tests := []struct {
		name  string
		times int
	}{
		{"once", 1},
		{"twice", 2},
		{"three times", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, nil)
			chain := "sha256:" + strings.Repeat("c", 64)
			s.hold([]string{chain})
			var first *layer
			for i := range tc.times {
				tmp, err := os.MkdirTemp(s.tmpDir, "layer-")
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(tmp, "f"), []byte{byte(i)}, 0o644)
				l, err := s.addLayer(context.Background(), tmp, &layer{ChainID: chain, DiffID: chain})
				if err != nil {
					t.Fatalf("addLayer %d: %v", i, err)
				}
				if first == nil {
					first = l
				} else if l != first {
					t.Fatalf("addLayer %d returned layer dir %s, want the stored %s", i, l.Short, first.Short)
				}
			}
			if n := len(mustReadDir(t, s.layersDir)); n != 1 {
				t.Errorf("%d layer dirs, want 1", n)
			}
			if n := len(mustReadDir(t, s.tmpDir)); n != 0 {
				t.Errorf("%d temp dirs left", n)
			}
			s.release(context.Background(), []string{chain})
			s.assertEmpty(t)
		})
	}
}

// TestQueriesDoNotWaitForDisk checks that Get, List, LowerDirs and FsInfo answer while a
// mutation waits for its database transaction.
func TestQueriesDoNotWaitForDisk(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("a", "a")))
	reg.push(t, "idx/img:v1", img)
	id := configDigest(t, img)

	tests := []struct {
		name   string
		mutate func(s *testService) error
	}{
		{"Remove", func(s *testService) error { return s.Remove(context.Background(), id) }},
		{"commit", func(s *testService) error {
			_, err := s.commit(context.Background(), &Image{ID: id}, []string{"docker.io/library/other:v1"}, nil)
			return err
		}},
		{"addLayer", func(s *testService) error {
			tmp, err := os.MkdirTemp(s.tmpDir, "layer-")
			if err != nil {
				return err
			}
			s.hold([]string{"sha256:" + strings.Repeat("d", 64)})
			_, err = s.addLayer(context.Background(), tmp, &layer{ChainID: "sha256:" + strings.Repeat("d", 64)})
			return err
		}},
		{"release", func(s *testService) error {
			s.release(context.Background(), []string{"sha256:" + strings.Repeat("e", 64)})
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, nil)
			if _, err := s.Pull(context.Background(), reg.host+"/idx/img:v1", nil); err != nil {
				t.Fatal(err)
			}
			// A layer held by a pull that is about to give up, for release to drop.
			held := "sha256:" + strings.Repeat("e", 64)
			s.hold([]string{held})
			tmp, err := os.MkdirTemp(s.tmpDir, "layer-")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.addLayer(context.Background(), tmp, &layer{ChainID: held}); err != nil {
				t.Fatal(err)
			}
			// Hold the database's single write transaction open: every mutation now waits in
			// its own Update, as it would behind a slow fsync.
			inTx, unblock := make(chan struct{}), make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(unblock) }) }
			// Runs before the database is closed, even when the test fails early.
			defer release()
			txDone := make(chan error, 1)
			go func() {
				txDone <- s.db.Update(func(*store.Tx) error { close(inTx); <-unblock; return nil })
			}()
			<-inTx
			mutDone := make(chan error, 1)
			go func() { mutDone <- tc.mutate(s) }()
			// Wait (bounded) until the mutation holds the write lock.
			deadline := time.Now().Add(5 * time.Second)
			for s.writeMu.TryLock() {
				s.writeMu.Unlock()
				if time.Now().After(deadline) {
					t.Fatal("mutation never took the write lock")
				}
				time.Sleep(time.Millisecond)
			}
			queries := make(chan error, 1)
			go func() {
				_, err := s.Get(id)
				s.List("")
				s.LowerDirs(id)
				s.FsInfo()
				queries <- err
			}()
			answered := false
			select {
			case err := <-queries:
				answered = true
				if err != nil {
					t.Errorf("Get: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Error("queries waited for the database transaction of a mutation")
			}
			release()
			if err := <-txDone; err != nil {
				t.Fatal(err)
			}
			if err := <-mutDone; err != nil {
				t.Fatalf("mutation: %v", err)
			}
			if !answered {
				select {
				case <-queries:
				case <-time.After(5 * time.Second):
					t.Fatal("queries never returned")
				}
			}
		})
	}
}

// TestAmbiguousPrefix checks that an ID prefix naming several images is an invalid argument,
// for queries and removal alike, and that removal then keeps both images.
func TestAmbiguousPrefix(t *testing.T) {
	s := newTestService(t, nil)
	idA := "sha256:abc1" + strings.Repeat("0", 60)
	idB := "sha256:abc2" + strings.Repeat("0", 60)
	s.mu.Lock()
	s.publish(&Image{ID: idA})
	s.publish(&Image{ID: idB})
	s.mu.Unlock()
	tests := []struct {
		ref       string
		wantID    string
		wantErr   error
		removeErr error
	}{
		{ref: "abc", wantErr: store.ErrInvalidArgument, removeErr: store.ErrInvalidArgument},
		{ref: "sha256:abc", wantErr: store.ErrInvalidArgument, removeErr: store.ErrInvalidArgument},
		{ref: "abc1", wantID: idA},
		{ref: "sha256:abc2", wantID: idB},
		{ref: "fff", wantErr: store.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			img, err := s.Get(tc.ref)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Get: err = %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr == store.ErrInvalidArgument && (!strings.Contains(err.Error(), idA) || !strings.Contains(err.Error(), idB)) {
					t.Errorf("error %q does not name the matching images", err)
				}
				err := s.Remove(context.Background(), tc.ref)
				if tc.removeErr == nil && err != nil || tc.removeErr != nil && !errors.Is(err, tc.removeErr) {
					t.Fatalf("Remove: err = %v, want %v", err, tc.removeErr)
				}
			} else if err != nil || img.ID != tc.wantID {
				t.Fatalf("Get = %v, %v; want %s", img, err, tc.wantID)
			}
			if n := len(s.List("")); n != 2 {
				t.Fatalf("%d images left, want 2", n)
			}
		})
	}
}

// TestLoadRepair checks the repair New does on records a crash left behind, in particular
// adjacent records to delete or rewrite (bbolt buckets must not change during ForEach).
func TestLoadRepair(t *testing.T) {
	layerID := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	imageID := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 63) + "f" }
	tests := []struct {
		name       string
		layers     map[string]int      // chain ID -> recorded refs
		images     map[string][]string // image ID -> layers
		wantLayers map[string]int      // surviving layers -> refs
		wantImages []string
	}{
		{
			name:       "adjacent orphan layers",
			layers:     map[string]int{layerID('a'): 0, layerID('b'): 0, layerID('c'): 0, layerID('d'): 0},
			wantLayers: map[string]int{},
		},
		{
			name: "adjacent images with missing layers",
			images: map[string][]string{imageID('1'): {layerID('x')}, imageID('2'): {layerID('x')},
				imageID('3'): {layerID('x')}, imageID('4'): {layerID('y')}},
			wantLayers: map[string]int{},
		},
		{
			name:   "refcounts rewritten between deletions",
			layers: map[string]int{layerID('a'): 3, layerID('b'): 5, layerID('c'): 0, layerID('d'): 7, layerID('e'): 1},
			images: map[string][]string{imageID('1'): {layerID('b')}, imageID('2'): {layerID('b'), layerID('d')},
				imageID('3'): {layerID('x')}},
			wantLayers: map[string]int{layerID('b'): 2, layerID('d'): 1},
			wantImages: []string{imageID('1'), imageID('2')},
		},
	}
	// Enough records to span several database pages.
	many := map[string]int{}
	for i := range 300 {
		many[fmt.Sprintf("sha256:%064x", i)] = i % 2
	}
	tests = append(tests, struct {
		name       string
		layers     map[string]int
		images     map[string][]string
		wantLayers map[string]int
		wantImages []string
	}{name: "many orphan layers", layers: many, wantLayers: map[string]int{}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			db, err := store.Open(filepath.Join(root, "meta.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			short := 1
			err = db.Update(func(tx *store.Tx) error {
				for id, refs := range tc.layers {
					l := &layer{ChainID: id, DiffID: id, Short: fmt.Sprint(short), Refs: refs}
					short++
					if err := os.MkdirAll(filepath.Join(root, "images", "l", l.Short), 0o755); err != nil {
						return err
					}
					if err := tx.Put(layersBucket, id, l); err != nil {
						return err
					}
				}
				for id, ls := range tc.images {
					if err := tx.Put(imagesBucket, id, &Image{ID: id, Layers: ls}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(context.Background(), Options{Root: filepath.Join(root, "images"), DB: db})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			gotLayers := map[string]int{}
			var gotImages []string
			db.View(func(tx *store.Tx) error {
				tx.ForEach(layersBucket, func(id string, _ []byte) error {
					var l layer
					tx.Get(layersBucket, id, &l)
					gotLayers[id] = l.Refs
					return nil
				})
				return tx.ForEach(imagesBucket, func(id string, _ []byte) error {
					gotImages = append(gotImages, id)
					return nil
				})
			})
			if fmt.Sprint(gotLayers) != fmt.Sprint(tc.wantLayers) {
				t.Errorf("layer records %v, want %v", gotLayers, tc.wantLayers)
			}
			if fmt.Sprint(gotImages) != fmt.Sprint(tc.wantImages) && len(gotImages)+len(tc.wantImages) > 0 {
				t.Errorf("image records %v, want %v", gotImages, tc.wantImages)
			}
			if n := len(mustReadDir(t, s.layersDir)); n != len(tc.wantLayers) {
				t.Errorf("%d layer dirs, want %d", n, len(tc.wantLayers))
			}
			for id, refs := range tc.wantLayers {
				if l := s.layers[id]; l == nil || l.Refs != refs {
					t.Errorf("in-memory layer %s = %+v, want refs %d", id, l, refs)
				}
			}
		})
	}
}
