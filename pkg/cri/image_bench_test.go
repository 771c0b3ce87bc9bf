package cri

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/image"
)

// fixedImages is an ImageService over a fixed set of images, to measure the gRPC layer alone.
type fixedImages struct {
	ImageService
	imgs []*image.Image
}

func (f fixedImages) Get(ref string) (*image.Image, error) { return f.imgs[0], nil }
func (f fixedImages) List(string) []*image.Image           { return f.imgs }

func benchImages(n int) fixedImages {
	f := fixedImages{}
	for i := range n {
		f.imgs = append(f.imgs, &image.Image{
			ID:          fmt.Sprintf("sha256:%064x", i),
			RepoTags:    []string{fmt.Sprintf("registry.k8s.io/e2e-test-images/img%d:1.0", i)},
			RepoDigests: []string{fmt.Sprintf("registry.k8s.io/e2e-test-images/img%d@sha256:%064x", i, i)},
			Size:        1 << 20,
			User:        "1000",
		})
	}
	return f
}

// BenchmarkImageRPCs measures what the daemon does per ImageStatus and ListImages call between
// decoding the request and encoding the answer: the interceptor and the handler.
func BenchmarkImageRPCs(b *testing.B) {
	s := NewServer(Options{Config: config.Default(), Images: benchImages(5)})
	ic := NewInterceptor(klog.Background())
	ctx := context.Background()
	status := &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/e2e-test-images/img0:1.0"}}
	list := &runtimeapi.ListImagesRequest{}
	for _, bm := range []struct {
		name    string
		req     any
		handler grpc.UnaryHandler
	}{
		{"ImageStatus", status, func(ctx context.Context, req any) (any, error) {
			return s.ImageStatus(ctx, req.(*runtimeapi.ImageStatusRequest))
		}},
		{"ListImages", list, func(ctx context.Context, req any) (any, error) {
			return s.ListImages(ctx, req.(*runtimeapi.ListImagesRequest))
		}},
		{"Version", &runtimeapi.VersionRequest{}, func(ctx context.Context, req any) (any, error) {
			return s.Version(ctx, req.(*runtimeapi.VersionRequest))
		}},
	} {
		info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.ImageService/" + bm.name}
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ic.Unary(ctx, bm.req, info, bm.handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
