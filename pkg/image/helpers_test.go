package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/store"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testRegistry is an in-process registry on 127.0.0.1 that counts blob fetches and can be told
// to corrupt or stall blobs.
type testRegistry struct {
	host string // 127.0.0.1:PORT
	srv  *httptest.Server

	mu      sync.Mutex
	gets    map[string]int // blob digest -> GET count
	corrupt map[string]bool
	stall   bool
	user    string
	pass    string
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{gets: map[string]int{}, corrupt: map[string]bool{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		user, pass, stall := r.user, r.pass, r.stall
		r.mu.Unlock()
		if user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		i := strings.LastIndex(req.URL.Path, "/blobs/")
		if req.Method != http.MethodGet || i < 0 || strings.Contains(req.URL.Path, "/uploads/") {
			inner.ServeHTTP(w, req)
			return
		}
		dg := req.URL.Path[i+len("/blobs/"):]
		r.mu.Lock()
		r.gets[dg]++
		corrupt := r.corrupt[dg]
		r.mu.Unlock()
		if stall {
			<-req.Context().Done()
			return
		}
		if !corrupt {
			inner.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if len(body) > 0 {
			body[len(body)/2] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func (r *testRegistry) count(d string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets[d]
}

func (r *testRegistry) resetCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gets = map[string]int{}
}

func (r *testRegistry) push(t testing.TB, ref string, img v1.Image) string {
	t.Helper()
	n, err := name.ParseReference(r.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(n, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func (r *testRegistry) pushIndex(t testing.TB, ref string, idx v1.ImageIndex) string {
	t.Helper()
	n, err := name.ParseReference(r.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(n, idx); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// tarBytes builds a tar of headers; regular files get their Linkname as content.
func tarBytes(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Linkname)
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

func regFile(name, content string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Linkname: content}
}

func layerOf(t testing.TB, comp compression.Compression, hdrs ...*tar.Header) v1.Layer {
	t.Helper()
	data := tarBytes(t, hdrs...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithCompression(comp))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf builds an image whose single layer holds the given files plus a config.
func imageOf(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func configDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

type testService struct {
	*Service
	root string
	db   *store.DB
}

func newTestService(t testing.TB, mod func(*Options)) *testService {
	t.Helper()
	root := t.TempDir()
	db, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	o := Options{Root: filepath.Join(root, "images"), DB: db, WritableRoot: filepath.Join(root, "rw")}
	os.MkdirAll(o.WritableRoot, 0o755)
	if mod != nil {
		mod(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &testService{Service: s, root: root, db: db}
}

// assertEmpty checks that the store holds nothing: no image, no layer record, no layer dir and
// no temp dir.
func (ts *testService) assertEmpty(t *testing.T) {
	t.Helper()
	if l := ts.List(""); len(l) != 0 {
		t.Errorf("images listed: %v", l)
	}
	for _, d := range []string{ts.layersDir, ts.tmpDir} {
		entries, err := os.ReadDir(d)
		if err != nil || len(entries) != 0 {
			t.Errorf("%s holds %d entries (%v)", d, len(entries), err)
		}
	}
	n := 0
	ts.db.View(func(tx *store.Tx) error {
		for _, b := range []string{imagesBucket, layersBucket} {
			tx.ForEach(b, func(string, []byte) error { n++; return nil })
		}
		return nil
	})
	if n != 0 {
		t.Errorf("%d records left in the database", n)
	}
}
