package cri

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/image"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// testRegistry is an in-process registry on 127.0.0.1; with user set, it wants basic auth.
type testRegistry struct {
	host       string
	user, pass string
}

func newTestRegistry(t *testing.T, user, pass string) *testRegistry {
	t.Helper()
	r := &testRegistry{user: user, pass: pass}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Pushes from the test itself come with the credentials; only reads are guarded.
		if r.user != "" && req.Method == http.MethodGet {
			if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// push uploads a small random image with cfg under repo:tag and returns its config digest
// and manifest digest.
func (r *testRegistry) push(t *testing.T, ref string, img v1.Image) (id, manifestDigest string) {
	t.Helper()
	n, err := name.ParseReference(r.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(n, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.String(), d.String()
}

// testImage builds a random two-layer image with the given user and manifest annotations.
func testImage(t *testing.T, user string, annotations map[string]string) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User = user
	cf.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if len(annotations) > 0 {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	return img
}

// mirrorConfig writes a hosts.toml directory that sends docker.io and example.com to reg; the
// upstream servers are unreachable on purpose so that only the mirror can answer.
func mirrorConfig(t *testing.T, reg *testRegistry) string {
	t.Helper()
	dir := t.TempDir()
	for _, host := range []string{"docker.io", "example.com"} {
		if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
			t.Fatal(err)
		}
		content := "server = \"http://127.0.0.1:1\"\n[host.\"http://" + reg.host + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
		if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newImageService opens a real image store in a temp dir; inUse marks image IDs as used.
func newImageService(t *testing.T, registryDir string, inUse func(string) bool) *image.Service {
	t.Helper()
	root := t.TempDir()
	db, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	writable := filepath.Join(root, "containers")
	if err := os.MkdirAll(writable, 0o711); err != nil {
		t.Fatal(err)
	}
	s, err := image.New(context.Background(), image.Options{
		Root:              filepath.Join(root, "images"),
		WritableRoot:      writable,
		RegistryConfigDir: registryDir,
		DB:                db,
		InUse:             inUse,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// dialImages serves is over an in-memory listener with the production interceptor.
func dialImages(t *testing.T, is runtimeapi.ImageServiceServer) runtimeapi.ImageServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(NewInterceptor(klog.Background()).ServerOptions()...)
	runtimeapi.RegisterImageServiceServer(g, is)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewImageServiceClient(conn)
}
