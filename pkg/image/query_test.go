package image

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/store"
	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestLookupNormalises: a reference finds its image however it is written, the same answer
// comes from the remembered normalisation as from the first parse, and the remembered set
// stays bounded.
func TestLookupNormalises(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("a", "a")))
	manifestDigest := reg.push(t, "test/norm:latest", img)
	s := newTestService(t, nil)
	got, err := s.Pull(context.Background(), reg.host+"/test/norm", nil)
	if err != nil {
		t.Fatal(err)
	}
	found := []string{reg.host + "/test/norm", reg.host + "/test/norm:latest", reg.host + "/test/norm@" + manifestDigest,
		reg.host + "/test/norm:latest@" + manifestDigest}
	missing := []string{reg.host + "/test/norm:v2", reg.host + "/test/other", "Not/A/Valid:Ref", "busybox", "::"}
	for round := range 2 { // the second round answers from the remembered normalisations
		for _, ref := range found {
			if g, err := s.Get(ref); err != nil || g.ID != got.ID {
				t.Errorf("round %d: Get(%q) = %v, %v; want %s", round, ref, g, err, got.ID)
			}
		}
		for _, ref := range missing {
			if g, err := s.Get(ref); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("round %d: Get(%q) = %v, %v; want not found", round, ref, g, err)
			}
		}
	}
	for i := range 3 * maxNormalised {
		s.Get(fmt.Sprintf("example.com/many:%d", i))
	}
	s.normMu.Lock()
	n := len(s.norm)
	s.normMu.Unlock()
	if n > maxNormalised {
		t.Errorf("%d normalisations remembered, want at most %d", n, maxNormalised)
	}
	long := "example.com/" + strings.Repeat("a", 2*maxNormalisedLen)
	if _, err := s.Get(long); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("Get(a %d-byte reference) = %v", len(long), err)
	}
	s.normMu.Lock()
	_, kept := s.norm[long]
	s.normMu.Unlock()
	if kept {
		t.Errorf("a %d-byte reference was remembered", len(long))
	}
	if g, err := s.Get(reg.host + "/test/norm"); err != nil || g.ID != got.ID {
		t.Errorf("after many lookups: Get = %v, %v", g, err)
	}
}

// TestListFollowsChanges: the kept sorted list is rebuilt whenever an image comes or goes.
func TestListFollowsChanges(t *testing.T) {
	reg := newTestRegistry(t)
	s := newTestService(t, nil)
	ctx := context.Background()
	if l := s.List(""); len(l) != 0 {
		t.Fatalf("empty store lists %d images", len(l))
	}
	var ids []string
	for i := range 3 {
		img := imageOf(t, v1.Config{Env: []string{fmt.Sprintf("N=%d", i)}}, layerOf(t, compression.GZip, regFile("a", "a")))
		reg.push(t, fmt.Sprintf("test/l%d:v1", i), img)
		got, err := s.Pull(ctx, fmt.Sprintf("%s/test/l%d:v1", reg.host, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got.ID)
		if l := s.List(""); len(l) != i+1 {
			t.Fatalf("after %d pulls List has %d images", i+1, len(l))
		}
	}
	if err := s.Remove(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	l := s.List("")
	if len(l) != 2 || l[0].ID > l[1].ID || (l[0].ID != ids[0] && l[0].ID != ids[2]) || (l[1].ID != ids[0] && l[1].ID != ids[2]) {
		t.Fatalf("after removing %s List = %v", ids[1], l)
	}
	if cap(l) != len(l) {
		t.Errorf("List's shared slice has room to append into (len %d, cap %d)", len(l), cap(l))
	}
}

// TestLookupConcurrent: Get (under mu) and Use and Remove (under writeMu alone) resolve short
// references at the same time; run with -race.
func TestLookupConcurrent(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, v1.Config{}, layerOf(t, compression.GZip, regFile("a", "a")))
	reg.push(t, "test/conc:latest", img)
	s := newTestService(t, nil)
	if _, err := s.Pull(context.Background(), reg.host+"/test/conc", nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range 2000 {
				ref := fmt.Sprintf("%s/test/conc:%d", reg.host, i%50)
				switch g {
				case 0:
					s.Get(ref)
				case 1:
					if _, release, err := s.Use(ref); err == nil {
						release()
					}
				case 2:
					s.Remove(context.Background(), ref)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if _, err := s.Get(reg.host + "/test/conc"); err != nil {
		t.Fatalf("the pulled image is gone: %v", err)
	}
}
