// Command testregistry serves the images of an OCI image layout (as written
// by testimages) from memory, under their original repository paths without
// the registry host: registry.k8s.io/e2e-test-images/busybox:1.29-2 is
// served as e2e-test-images/busybox:1.29-2. Point the runtime's registry
// mirrors for registry.k8s.io, gcr.io, docker.io and public.ecr.aws at it.
//
//	go run ./test/critest/testregistry -images _output/test-images -addr 127.0.0.1:0 -port-file F
//
// The port file is written once every image is loaded, so a script can wait
// for it to appear. SIGTERM or SIGINT stops the registry and removes the file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"k8s.io/klog/v2"
)

func main() {
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fs)
	images := fs.String("images", filepath.Join("_output", "test-images"), "OCI image layout to serve")
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	portFile := fs.String("port-file", "", "file to write the chosen port to once the registry is ready")
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())
	if err := run(ctx, *images, *addr, *portFile); err != nil {
		klog.FromContext(ctx).Error(err, "Test registry failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, images, addr, portFile string) (err error) {
	logger := klog.FromContext(ctx)
	s, err := start(ctx, images, addr)
	if err != nil {
		return err
	}
	defer func() {
		if serr := s.shutdown(context.WithoutCancel(ctx)); serr != nil && err == nil {
			err = serr
		}
	}()
	if portFile != "" {
		if err := writePortFile(portFile, s.addr.Port); err != nil {
			return err
		}
		defer os.Remove(portFile)
	}
	logger.Info("Test registry ready", "addr", s.addr.String(), "images", images)
	select {
	case <-ctx.Done():
		logger.Info("Test registry stopping")
		return nil
	case err := <-s.done:
		// Serve only returns early on a listener failure; put the value back
		// for shutdown, which waits on it.
		s.done <- err
		return fmt.Errorf("serve: %w", err)
	}
}

// writePortFile writes the port through a rename, so a reader polling for
// the file never sees it empty or half written.
func writePortFile(path string, port int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write port file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write port file %s: %w", path, err)
	}
	return nil
}
