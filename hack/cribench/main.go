// Command cribench measures CRI operations that critest -benchmark does not cover, against a
// running cri-mini (or any CRI runtime) over its socket, and prints medians.
//
//	cribench -endpoint unix:///run/cri-mini/cri-mini.sock -n 10 images
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	nginx   = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
)

// samples collects durations of one operation.
type samples struct {
	name string
	ds   []time.Duration
}

func (s *samples) median() time.Duration {
	if len(s.ds) == 0 {
		return 0
	}
	sorted := append([]time.Duration(nil), s.ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	mid := len(sorted) / 2
	if len(sorted)%2 == 0 {
		return (sorted[mid-1] + sorted[mid]) / 2
	}
	return sorted[mid]
}

func timed(s *samples, fn func() error) error {
	start := time.Now()
	err := fn()
	s.ds = append(s.ds, time.Since(start))
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

type bench struct {
	images runtimeapi.ImageServiceClient
}

func (b *bench) pull(ctx context.Context, ref string) error {
	_, err := b.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	return err
}

func (b *bench) remove(ctx context.Context, ref string) error {
	_, err := b.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	return err
}

// imageBench: cold busybox, nginx right after busybox (shared base layers), cached re-pull,
// ImageStatus and ListImages. "Cold" means the image and its layers are removed first.
func (b *bench) imageBench(ctx context.Context, n int) ([]*samples, error) {
	cold := &samples{name: "PullImage busybox cold"}
	after := &samples{name: "PullImage nginx after busybox"}
	cached := &samples{name: "PullImage cached"}
	status := &samples{name: "ImageStatus"}
	list := &samples{name: "ListImages"}
	for i := 0; i < n; i++ {
		for _, ref := range []string{nginx, busybox} {
			if err := b.remove(ctx, ref); err != nil {
				return nil, fmt.Errorf("remove %s: %w", ref, err)
			}
		}
		if err := timed(cold, func() error { return b.pull(ctx, busybox) }); err != nil {
			return nil, err
		}
		if err := timed(after, func() error { return b.pull(ctx, nginx) }); err != nil {
			return nil, err
		}
		if err := timed(cached, func() error { return b.pull(ctx, busybox) }); err != nil {
			return nil, err
		}
		if err := timed(status, func() error {
			resp, err := b.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: busybox}})
			if err == nil && resp.Image == nil {
				err = fmt.Errorf("image %s not found after pull", busybox)
			}
			return err
		}); err != nil {
			return nil, err
		}
		if err := timed(list, func() error {
			_, err := b.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
			return err
		}); err != nil {
			return nil, err
		}
	}
	return []*samples{cold, after, cached, status, list}, nil
}

func main() {
	endpoint := flag.String("endpoint", "unix:///run/cri-mini/cri-mini.sock", "CRI endpoint")
	n := flag.Int("n", 10, "iterations (medians are over these)")
	flag.Parse()
	if flag.NArg() != 1 || flag.Arg(0) != "images" {
		fmt.Fprintln(os.Stderr, "usage: cribench [-endpoint E] [-n N] images")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cribench: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b := &bench{images: runtimeapi.NewImageServiceClient(conn)}
	results, err := b.imageBench(ctx, *n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cribench: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("image benchmarks (median of %d)\n", *n)
	for _, s := range results {
		fmt.Printf("  %-32s %10s\n", s.name, s.median().Round(10*time.Microsecond))
	}
}
