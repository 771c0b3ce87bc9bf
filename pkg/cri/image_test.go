package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/image"
)

func imageSpec(ref string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: ref} }

func TestImageRPCs(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	uidImg := testImage(t, "1000:1000", map[string]string{"org.example.team": "images"})
	uidID, uidDigest := reg.push(t, "library/busybox:latest", uidImg)
	reg.push(t, "library/busybox:1.36", uidImg)
	nameID, _ := reg.push(t, "apps/named:v1", testImage(t, "nobody:nogroup", nil))
	rootID, _ := reg.push(t, "apps/root:v1", testImage(t, "", nil))

	var inUse string
	svc := newImageService(t, mirrorConfig(t, reg), func(id string) bool { return id == inUse })
	c := dialImages(t, NewServer(Options{Config: config.Default(), Images: svc}))
	ctx := context.Background()

	pulls := []struct{ ref, wantID string }{
		{"busybox", uidID},
		{"docker.io/library/busybox:1.36", uidID},
		{"example.com/apps/named:v1", nameID},
		{"example.com/apps/root:v1", rootID},
	}
	for _, p := range pulls {
		resp, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: imageSpec(p.ref)})
		if err != nil {
			t.Fatalf("pull %s: %v", p.ref, err)
		}
		if resp.ImageRef != p.wantID {
			t.Fatalf("pull %s: image_ref %s, want the config digest %s", p.ref, resp.ImageRef, p.wantID)
		}
	}

	t.Run("status", func(t *testing.T) {
		tests := []struct {
			ref          string
			wantID       string
			wantUID      *int64
			wantUsername string
			wantTags     []string
			wantAnn      bool
		}{
			{"busybox", uidID, ptr(int64(1000)), "", []string{"docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"}, true},
			{"example.com/apps/named:v1", nameID, nil, "nobody", []string{"example.com/apps/named:v1"}, false},
			{"example.com/apps/root:v1", rootID, nil, "", []string{"example.com/apps/root:v1"}, false},
		}
		for _, tt := range tests {
			t.Run(tt.ref, func(t *testing.T) {
				st, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: imageSpec(tt.ref)})
				if err != nil {
					t.Fatal(err)
				}
				img := st.GetImage()
				if img.GetId() != tt.wantID || img.GetSize() == 0 {
					t.Fatalf("image = %v, want id %s and a size", img, tt.wantID)
				}
				if fmt.Sprint(img.GetRepoTags()) != fmt.Sprint(tt.wantTags) || len(img.GetRepoDigests()) != 1 {
					t.Fatalf("tags %v digests %v, want tags %v and one digest", img.GetRepoTags(), img.GetRepoDigests(), tt.wantTags)
				}
				if (img.GetUid() == nil) != (tt.wantUID == nil) || (tt.wantUID != nil && img.GetUid().GetValue() != *tt.wantUID) {
					t.Fatalf("uid = %v, want %v", img.GetUid(), tt.wantUID)
				}
				if img.GetUsername() != tt.wantUsername {
					t.Fatalf("username = %q, want %q", img.GetUsername(), tt.wantUsername)
				}
				if tt.wantAnn != (img.GetSpec().GetAnnotations()["org.example.team"] == "images") {
					t.Fatalf("spec = %v, want annotations: %v", img.GetSpec(), tt.wantAnn)
				}
				if len(st.Info) != 0 {
					t.Fatalf("non-verbose status has info %v", st.Info)
				}
				// Every name of the image answers exactly the same status, as critest checks.
				for _, other := range append(append([]string{img.Id}, img.RepoTags...), img.RepoDigests...) {
					ost, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: imageSpec(other)})
					if err != nil || !proto.Equal(ost.GetImage(), img) {
						t.Fatalf("status by %q = %v (%v), want %v", other, ost.GetImage(), err, img)
					}
				}
			})
		}
	})

	t.Run("verbose", func(t *testing.T) {
		st, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: imageSpec("busybox"), Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			ChainID   string `json:"chainID"`
			ImageSpec struct {
				OS     string `json:"os"`
				Config struct {
					User string   `json:"User"`
					Cmd  []string `json:"Cmd"`
				} `json:"config"`
				RootFS struct {
					Type    string   `json:"type"`
					DiffIDs []string `json:"diff_ids"`
				} `json:"rootfs"`
			} `json:"imageSpec"`
		}
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
			t.Fatalf("info is not JSON: %v: %q", err, st.Info["info"])
		}
		spec := info.ImageSpec
		if !strings.HasPrefix(info.ChainID, "sha256:") || spec.OS != "linux" || spec.Config.User != "1000:1000" ||
			fmt.Sprint(spec.Config.Cmd) != "[/bin/sh]" || spec.RootFS.Type != "layers" || len(spec.RootFS.DiffIDs) != 2 {
			t.Fatalf("verbose info = %+v", info)
		}
	})

	t.Run("missing image is OK with no image", func(t *testing.T) {
		for _, ref := range []string{"example.com/nothing:here", "sha256:" + strings.Repeat("0", 64), "Not A Reference!"} {
			st, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: imageSpec(ref)})
			if err != nil || st.GetImage() != nil {
				t.Fatalf("status of %q = %v, %v; want OK and no image", ref, st, err)
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		tests := []struct {
			filter string
			want   []string
		}{
			{"", sortedIDs(uidID, nameID, rootID)},
			{"busybox", []string{uidID}},
			{"docker.io/library/busybox:1.36", []string{uidID}},
			{"example.com/apps/named:v1", []string{nameID}},
			{rootID, []string{rootID}},
			{"example.com/nothing:here", nil},
		}
		for _, tt := range tests {
			t.Run(tt.filter, func(t *testing.T) {
				var filter *runtimeapi.ImageFilter
				if tt.filter != "" {
					filter = &runtimeapi.ImageFilter{Image: imageSpec(tt.filter)}
				}
				resp, err := c.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: filter})
				if err != nil {
					t.Fatal(err)
				}
				if got := idsOf(resp.Images); fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("listed %v, want %v", got, tt.want)
				}
				streamed := streamAll(t, c, filter)
				if len(streamed) != len(resp.Images) {
					t.Fatalf("streamed %d images, listed %d", len(streamed), len(resp.Images))
				}
				for i := range streamed {
					if !proto.Equal(streamed[i], resp.Images[i]) {
						t.Fatalf("streamed %v, listed %v", streamed[i], resp.Images[i])
					}
				}
			})
		}
	})

	t.Run("fsinfo", func(t *testing.T) {
		resp, err := c.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.ImageFilesystems) != 1 || len(resp.ContainerFilesystems) != 1 {
			t.Fatalf("fsinfo = %v, want one image and one container filesystem", resp)
		}
		fs := resp.ImageFilesystems[0]
		if fs.Timestamp <= 0 || fs.GetFsId().GetMountpoint() == "" || fs.GetUsedBytes().GetValue() == 0 || fs.GetInodesUsed().GetValue() == 0 {
			t.Fatalf("image filesystem = %v", fs)
		}
		cfs := resp.ContainerFilesystems[0]
		if cfs.Timestamp <= 0 || cfs.GetFsId().GetMountpoint() == "" || cfs.GetUsedBytes() == nil || cfs.GetInodesUsed().GetValue() == 0 {
			t.Fatalf("container filesystem = %v", cfs)
		}
	})

	t.Run("remove", func(t *testing.T) {
		inUse = nameID
		_, err := c.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: imageSpec(nameID)})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("remove of an image in use: %v, want FailedPrecondition", err)
		}
		inUse = ""
		for _, ref := range []string{"example.com/apps/named:v1", "example.com/apps/named:v1", "busybox@" + uidDigest, "example.com/never:pulled"} {
			if _, err := c.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: imageSpec(ref)}); err != nil {
				t.Fatalf("remove %s: %v", ref, err)
			}
		}
		resp, err := c.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := idsOf(resp.Images); fmt.Sprint(got) != fmt.Sprint([]string{rootID}) {
			t.Fatalf("after removals listed %v, want only %s", got, rootID)
		}
	})
}

func TestImageRPCsRejectEmptyReference(t *testing.T) {
	svc := newImageService(t, "", nil)
	c := dialImages(t, NewServer(Options{Config: config.Default(), Images: svc}))
	ctx := context.Background()
	calls := map[string]func() error{
		"PullImage": func() error {
			_, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{}})
			return err
		},
		"PullImage without spec": func() error {
			_, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{})
			return err
		},
		"ImageStatus": func() error {
			_, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{}})
			return err
		},
		"RemoveImage": func() error {
			_, err := c.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{}})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "image.image") {
				t.Fatalf("got %v, want InvalidArgument naming image.image", err)
			}
		})
	}
}

func TestPullImageAuthAndDeadline(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	id, _ := reg.push(t, "private/app:v1", testImage(t, "", nil))
	reg.user, reg.pass = "alice", "secret"
	svc := newImageService(t, mirrorConfig(t, reg), nil)
	c := dialImages(t, NewServer(Options{Config: config.Default(), Images: svc}))
	const ref = "example.com/private/app:v1"

	tests := []struct {
		name string
		auth *runtimeapi.AuthConfig
		ok   bool
	}{
		{"no credentials", nil, false},
		{"wrong password", &runtimeapi.AuthConfig{Username: "alice", Password: "nope"}, false},
		{"credentials for another server are not sent", &runtimeapi.AuthConfig{Username: "alice", Password: "secret", ServerAddress: "https://other.example.org/v1/"}, false},
		{"username and password", &runtimeapi.AuthConfig{Username: "alice", Password: "secret", ServerAddress: "example.com"}, true},
		{"auth field", &runtimeapi.AuthConfig{Auth: "YWxpY2U6c2VjcmV0"}, true}, // base64("alice:secret")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: imageSpec(ref), Auth: tt.auth})
			if tt.ok != (err == nil) {
				t.Fatalf("pull: %v, want success %v", err, tt.ok)
			}
			if tt.ok && resp.ImageRef != id {
				t.Fatalf("image_ref %s, want %s", resp.ImageRef, id)
			}
		})
	}

	// critest: a pull whose deadline passes fails with DeadlineExceeded.
	if _, err := c.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: imageSpec(ref)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: imageSpec(ref), Auth: &runtimeapi.AuthConfig{Username: "alice", Password: "secret"}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("pull with 1ms deadline: %v, want DeadlineExceeded", err)
	}
}

// manyImages is an ImageService holding n generated images, to test StreamImages' batching
// without pulling hundreds of images.
type manyImages struct {
	ImageService
	n int
}

func (m manyImages) List(string) []*image.Image {
	out := make([]*image.Image, m.n)
	for i := range out {
		out[i] = &image.Image{ID: fmt.Sprintf("sha256:%064x", i), Size: 1}
	}
	return out
}

func TestStreamImagesBatches(t *testing.T) {
	tests := []struct {
		n           int
		wantBatches []int
	}{
		{0, nil},
		{1, []int{1}},
		{streamImagesBatch, []int{streamImagesBatch}},
		{2*streamImagesBatch + 7, []int{streamImagesBatch, streamImagesBatch, 7}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			c := dialImages(t, NewServer(Options{Config: config.Default(), Images: manyImages{n: tt.n}}))
			stream, err := c.StreamImages(context.Background(), &runtimeapi.StreamImagesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var batches []int
			seen := map[string]bool{}
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				batches = append(batches, len(resp.Images))
				for _, img := range resp.Images {
					seen[img.Id] = true
				}
				if len(batches) > tt.n+1 {
					t.Fatalf("more messages than images: %v", batches)
				}
			}
			if fmt.Sprint(batches) != fmt.Sprint(tt.wantBatches) || len(seen) != tt.n {
				t.Fatalf("batches %v with %d distinct images, want %v and %d", batches, len(seen), tt.wantBatches, tt.n)
			}
		})
	}
}

func TestImageRPCsWithoutImageService(t *testing.T) {
	c := dialImages(t, NewServer(Options{Config: config.Default()}))
	_, err := c.ListImages(context.Background(), &runtimeapi.ListImagesRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("ListImages without an image service: %v, want Unavailable", err)
	}
}

func TestImageUser(t *testing.T) {
	tests := []struct {
		user     string
		wantUID  *int64
		wantName string
	}{
		{"", nil, ""},
		{"0", ptr(int64(0)), ""},
		{"1000", ptr(int64(1000)), ""},
		{"1000:1000", ptr(int64(1000)), ""},
		{"www-data", nil, "www-data"},
		{"www-data:www-data", nil, "www-data"},
		{"nobody:65534", nil, "nobody"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			uid, name := imageUser(tt.user)
			if (uid == nil) != (tt.wantUID == nil) || (uid != nil && uid.Value != *tt.wantUID) || name != tt.wantName {
				t.Fatalf("imageUser(%q) = %v, %q; want %v, %q", tt.user, uid, name, tt.wantUID, tt.wantName)
			}
		})
	}
}

func TestSameRegistry(t *testing.T) {
	tests := []struct {
		ref, server string
		want        bool
	}{
		{"busybox", "https://index.docker.io/v1/", true},
		{"docker.io/library/busybox", "docker.io", true},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io", true},
		{"registry.k8s.io/pause:3.10", "https://registry.k8s.io", true},
		{"127.0.0.1:5000/app", "127.0.0.1:5000", true},
		{"127.0.0.1:5000/app", "127.0.0.1:5001", false},
		{"registry.k8s.io/pause:3.10", "docker.io", false},
	}
	for _, tt := range tests {
		t.Run(tt.ref+"@"+tt.server, func(t *testing.T) {
			if got := sameRegistry(tt.ref, tt.server); got != tt.want {
				t.Fatalf("sameRegistry(%q, %q) = %v, want %v", tt.ref, tt.server, got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func idsOf(imgs []*runtimeapi.Image) []string {
	var out []string
	for _, img := range imgs {
		out = append(out, img.Id)
	}
	return out
}

func sortedIDs(ids ...string) []string {
	out := append([]string(nil), ids...)
	slices.Sort(out)
	return out
}

func streamAll(t *testing.T, c runtimeapi.ImageServiceClient, filter *runtimeapi.ImageFilter) []*runtimeapi.Image {
	t.Helper()
	stream, err := c.StreamImages(context.Background(), &runtimeapi.StreamImagesRequest{Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	var out []*runtimeapi.Image
	for range 1000 {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp.Images...)
	}
	t.Fatal("StreamImages did not end after 1000 messages")
	return nil
}
