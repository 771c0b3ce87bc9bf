package e2e

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// e2eImage is a random two-layer image whose config runs as user.
func e2eImage(t *testing.T, user string) (v1.Image, string) {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.User = "linux", "amd64", user
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return img, id.String()
}

// mirrorRegistry starts a registry on 127.0.0.1 and a hosts.toml dir that sends example.com
// to it (the real example.com is never asked: its server entry is unreachable).
func mirrorRegistry(t *testing.T, base string) (host, configDir string) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	configDir = filepath.Join(base, "certs.d")
	if err := os.MkdirAll(filepath.Join(configDir, "example.com"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostsToml := "server = \"http://127.0.0.1:1\"\n[host.\"http://" + host + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.WriteFile(filepath.Join(configDir, "example.com", "hosts.toml"), []byte(hostsToml), 0o644); err != nil {
		t.Fatal(err)
	}
	return host, configDir
}

func pushTo(t *testing.T, host, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
}

func imageClient(t *testing.T, socket string) runtimeapi.ImageServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewImageServiceClient(conn)
}

func TestImagesPullStatusRemoveFsInfo(t *testing.T) {
	dirs := newDaemonDirs(t)
	host, certs := mirrorRegistry(t, dirs.base)
	uidImg, uidID := e2eImage(t, "1000:1000")
	nameImg, nameID := e2eImage(t, "nobody")
	pushTo(t, host, "e2e/uid:v1", uidImg)
	pushTo(t, host, "e2e/name:v1", nameImg)
	startDaemon(t, dirs.socket, "--config", dirs.writeConfig(t, "[registry]\nconfig_path = \""+certs+"\"\n"))
	c := imageClient(t, dirs.socket)
	ctx := context.Background()

	for ref, want := range map[string]string{"example.com/e2e/uid:v1": uidID, "example.com/e2e/name:v1": nameID} {
		resp, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil {
			t.Fatalf("pull %s through the mirror: %v", ref, err)
		}
		if resp.ImageRef != want {
			t.Fatalf("pull %s: image_ref %s, want %s", ref, resp.ImageRef, want)
		}
	}
	list, err := c.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 2 {
		t.Fatalf("list = %v, %v; want 2 images", list, err)
	}

	tests := []struct {
		ref      string
		uid      *int64
		username string
	}{
		{"example.com/e2e/uid:v1", func() *int64 { v := int64(1000); return &v }(), ""},
		{"example.com/e2e/name:v1", nil, "nobody"},
	}
	for _, tt := range tests {
		st, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: tt.ref}, Verbose: true})
		if err != nil || st.Image == nil {
			t.Fatalf("status %s = %v, %v", tt.ref, st, err)
		}
		if (st.Image.Uid == nil) != (tt.uid == nil) || (tt.uid != nil && st.Image.Uid.Value != *tt.uid) || st.Image.Username != tt.username {
			t.Fatalf("status %s: uid %v username %q, want %v %q", tt.ref, st.Image.Uid, st.Image.Username, tt.uid, tt.username)
		}
		if !strings.Contains(st.Info["info"], `"imageSpec"`) {
			t.Fatalf("verbose status %s has no image spec: %v", tt.ref, st.Info)
		}
	}

	fs, err := c.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].GetUsedBytes().GetValue() == 0 ||
		fs.ImageFilesystems[0].GetFsId().GetMountpoint() == "" || len(fs.ContainerFilesystems) != 1 {
		t.Fatalf("fsinfo = %v, %v", fs, err)
	}

	for range 2 { // the second removal finds nothing and is still OK
		if _, err := c.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "example.com/e2e/uid:v1"}}); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
	st, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: uidID}})
	if err != nil || st.Image != nil {
		t.Fatalf("status after removal = %v, %v; want OK and no image", st, err)
	}
}

func TestImagesImportOfflineAndThroughDaemon(t *testing.T) {
	dirs := newDaemonDirs(t)
	cfg := dirs.writeConfig(t, "")
	offImg, offID := e2eImage(t, "")
	onImg, onID := e2eImage(t, "")

	dockerTar := filepath.Join(dirs.base, "offline.tar")
	tag, err := name.NewTag("example.com/airgap/offline:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(dockerTar, tag, offImg); err != nil {
		t.Fatal(err)
	}
	ociDir := filepath.Join(dirs.base, "oci")
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(onImg, layout.WithAnnotations(map[string]string{"io.containerd.image.name": "example.com/airgap/online:v2"})); err != nil {
		t.Fatal(err)
	}

	// No daemon: the CLI opens the store itself.
	out, err := exec.Command(binary, "images", "import", "--config", cfg, dockerTar).CombinedOutput()
	if err != nil || !strings.Contains(string(out), offID) {
		t.Fatalf("offline import: %v\n%s", err, out)
	}

	d := startDaemon(t, dirs.socket, "--config", cfg)
	admin := filepath.Join(dirs.state, "admin.sock")
	if st, err := os.Stat(admin); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v %v, want mode 0600", st, err)
	}
	c := imageClient(t, dirs.socket)
	ctx := context.Background()
	st, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "example.com/airgap/offline:v1"}})
	if err != nil || st.GetImage().GetId() != offID {
		t.Fatalf("offline-imported image seen by the daemon: %v, %v; want %s", st, err, offID)
	}

	// The daemon holds the store: the CLI must go through it, and the daemon sees the image
	// at once.
	out, err = exec.Command(binary, "images", "import", "--config", cfg, ociDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), onID) {
		t.Fatalf("import through the daemon: %v\n%s", err, out)
	}
	list, err := c.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, img := range list.Images {
		ids = append(ids, img.Id)
	}
	slices.Sort(ids)
	want := []string{offID, onID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("daemon lists %v, want %v", ids, want)
	}
	out, err = exec.Command(binary, "images", "list", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "example.com/airgap/offline:v1") || !strings.Contains(string(out), "example.com/airgap/online:v2") {
		t.Fatalf("images list through the daemon: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "images", "import", "--config", cfg, filepath.Join(dirs.base, "missing.tar")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.tar") {
		t.Fatalf("import of a missing file: %v\n%s", err, out)
	}
	notAnImage := filepath.Join(dirs.base, "garbage")
	if err := os.MkdirAll(notAnImage, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binary, "images", "import", "--config", cfg, notAnImage).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "neither a docker archive nor an OCI layout") {
		t.Fatalf("import of a dir that is no image through the daemon: %v\n%s", err, out)
	}

	// After the daemon stops, its admin socket is gone and the CLI reads the store itself.
	if err := d.stop(t); err != nil {
		t.Fatalf("daemon exited with %v\n%s", err, d.output.String())
	}
	if _, err := os.Lstat(admin); !os.IsNotExist(err) {
		t.Fatalf("admin socket left after shutdown: %v", err)
	}
	out, err = exec.Command(binary, "images", "list", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), offID) || !strings.Contains(string(out), onID) {
		t.Fatalf("offline images list: %v\n%s", err, out)
	}
}
