// Command cribench measures CRI operations that critest -benchmark does not cover, against a
// running cri-mini (or any CRI runtime) over its socket, and prints medians next to issue 5's
// containerd anchors.
//
//	cribench -endpoint unix:///run/cri-mini/cri-mini.sock -n 10 images
//	cribench -endpoint ... -n 20 -crictl _output/bin/crictl lifecycle
//	cribench -endpoint ... -n 20 lifecycle-cri
//	cribench -endpoint ... -pods 10 -daemon-pid PID podmem
//	cribench -endpoint ... -n 20 -cni-conf F -cni-bin D sandbox
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
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

// The sandbox mode pins network namespaces on throw-away locked threads (pkg/ns): the main
// goroutine must hold the main thread, which the Go runtime never destroys, so that no such
// thread can be it.
func init() {
	runtime.LockOSThread()
}

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
	images  runtimeapi.ImageServiceClient
	runtime runtimeapi.RuntimeServiceClient
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
// ImageStatus and ListImages are measured as critest does, one call right after a pull; Version
// is measured in that same position, so its row is the transport's floor for them: what a gRPC
// round trip on this socket costs with no work behind it.
func (b *bench) imageBench(ctx context.Context, n int) ([]*samples, error) {
	cold := &samples{name: "PullImage busybox cold"}
	after := &samples{name: "PullImage nginx after busybox"}
	cached := &samples{name: "PullImage cached"}
	status := &samples{name: "ImageStatus"}
	list := &samples{name: "ListImages"}
	version := &samples{name: "Version (floor)"}
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
		if err := timed(status, func() error { return b.status(ctx) }); err != nil {
			return nil, err
		}
		if err := timed(list, func() error { return b.list(ctx) }); err != nil {
			return nil, err
		}
		if err := b.pull(ctx, busybox); err != nil {
			return nil, fmt.Errorf("pull %s: %w", busybox, err)
		}
		if err := timed(version, func() error { return b.version(ctx) }); err != nil {
			return nil, err
		}
	}
	warm, err := b.warmBench(ctx, 10*n)
	if err != nil {
		return nil, err
	}
	return append([]*samples{cold, after, cached, status, list, version}, warm...), nil
}

// warmBench measures ImageStatus, ListImages and Version back to back, n rounds interleaved:
// the steady state of a busy connection, where the gap between a call and Version is the
// work the daemon does for it.
func (b *bench) warmBench(ctx context.Context, n int) ([]*samples, error) {
	status := &samples{name: "ImageStatus, back to back"}
	list := &samples{name: "ListImages, back to back"}
	version := &samples{name: "Version, back to back"}
	for i := 0; i < n; i++ {
		if err := timed(status, func() error { return b.status(ctx) }); err != nil {
			return nil, err
		}
		if err := timed(list, func() error { return b.list(ctx) }); err != nil {
			return nil, err
		}
		if err := timed(version, func() error { return b.version(ctx) }); err != nil {
			return nil, err
		}
	}
	return []*samples{status, list, version}, nil
}

func (b *bench) status(ctx context.Context) error {
	resp, err := b.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: busybox}})
	if err == nil && resp.Image == nil {
		err = fmt.Errorf("image %s not found after pull", busybox)
	}
	return err
}

func (b *bench) list(ctx context.Context) error {
	_, err := b.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	return err
}

func (b *bench) version(ctx context.Context) error {
	_, err := b.runtime.Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

func main() {
	endpoint := flag.String("endpoint", "unix:///run/cri-mini/cri-mini.sock", "CRI endpoint")
	n := flag.Int("n", 10, "iterations (medians are over these)")
	crictl := flag.String("crictl", "crictl", "crictl binary (lifecycle)")
	daemon := flag.Int("daemon-pid", 0, "pid of the runtime daemon (podmem)")
	pods := flag.Int("pods", 10, "idle pods to start (podmem)")
	settle := flag.Duration("settle", 10*time.Second, "time the idle pods settle before measuring (podmem)")
	userns := flag.Bool("userns", false, "pods with a user namespace of their own, as kubelet asks for hostUsers: false (lifecycle-cri)")
	var floor floorOptions
	flag.StringVar(&floor.conf, "cni-conf", "", "the daemon's CNI conflist, whose plugins set the floor (sandbox)")
	flag.StringVar(&floor.binDir, "cni-bin", "/opt/cni/bin", "CNI plugin directory (sandbox)")
	flag.StringVar(&floor.bridge, "floor-bridge", "crm-floor0", "bridge the floor's conflist is rewritten to; must not exist (sandbox)")
	flag.StringVar(&floor.subnet, "floor-subnet", "10.239.255.0/24", "subnet the floor's conflist is rewritten to (sandbox)")
	flag.Parse()
	if flag.NArg() != 1 {
		usage()
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	b := &bench{images: runtimeapi.NewImageServiceClient(conn), runtime: runtimeapi.NewRuntimeServiceClient(conn)}
	work, err := os.MkdirTemp("", "cribench.")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(work)
	switch flag.Arg(0) {
	case "images":
		results, err := b.imageBench(ctx, *n)
		if err != nil {
			fail(err)
		}
		printSamples(fmt.Sprintf("image benchmarks (median of %d)", *n), results)
	case "lifecycle":
		if err := b.pull(ctx, busybox); err != nil {
			fail(fmt.Errorf("pull %s: %w", busybox, err))
		}
		results, err := lifecycleBench(ctx, &crictlRunner{crictl: *crictl, endpoint: *endpoint, dir: work}, *n)
		if err != nil {
			fail(err)
		}
		printSamples(fmt.Sprintf("pod lifecycle with crictl (median of %d, ms)", *n), results)
		issueAnchors.row(results[0].name, float64(results[0].median().Microseconds())/1000, "ms")
		floor, err := crictlFloor(ctx, &crictlRunner{crictl: *crictl}, *n)
		if err != nil {
			fail(err)
		}
		printSamples("crictl's own cost in that loop", floor)
	case "lifecycle-cri":
		if err := b.pull(ctx, busybox); err != nil {
			fail(fmt.Errorf("pull %s: %w", busybox, err))
		}
		results, err := b.lifecycleCRIBench(ctx, *n, work, *userns)
		if err != nil {
			fail(err)
		}
		title := fmt.Sprintf("pod lifecycle over one CRI connection (median of %d)", *n)
		if *userns {
			title = fmt.Sprintf("pod lifecycle over one CRI connection, pods with a user namespace (median of %d)", *n)
		}
		printSamples(title, results)
	case "sandbox":
		if floor.conf == "" {
			usage()
		}
		results, err := b.sandboxFloorBench(ctx, floor, *n, work)
		if err != nil {
			fail(err)
		}
		printFloor(*n, results)
	case "podmem":
		if *daemon <= 0 {
			usage()
		}
		rep, err := b.podMemBench(ctx, *daemon, *pods, work, *settle)
		if err != nil {
			fail(err)
		}
		rep.print(issueAnchors)
	default:
		usage()
	}
}

func printSamples(title string, results []*samples) {
	fmt.Println(title)
	for _, s := range results {
		fmt.Printf("  %-32s %10s\n", s.name, s.median().Round(10*time.Microsecond))
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cribench [-endpoint E] [-n N] images | [-crictl C] lifecycle | lifecycle-cri | -daemon-pid P [-pods N] podmem | -cni-conf F [-cni-bin D] sandbox")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "cribench: %v\n", err)
	os.Exit(1)
}
