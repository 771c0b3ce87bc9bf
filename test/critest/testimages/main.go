// Command testimages builds, from Debian packages, every container image the
// critest conformance suite pulls, and writes them as one OCI image layout
// whose index names each image by its full original reference. The build is
// reproducible; a rerun with the same recipe and package versions only
// checks a stamp and returns.
//
//	go run ./test/critest/testimages -out _output/test-images -cache _output/debs
package main

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

// sources is this program's own code: any change to a recipe changes the
// stamp and forces a rebuild.
//
//go:embed *.go nnp/main.go
var sources embed.FS

const stampFile = "testimages.stamp"

func main() {
	fsFlags := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fsFlags)
	out := fsFlags.String("out", filepath.Join("_output", "test-images"), "directory of the OCI image layout to write")
	cache := fsFlags.String("cache", filepath.Join("_output", "debs"), "directory caching the downloaded .deb files")
	_ = fsFlags.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())
	if err := run(ctx, *out, *cache); err != nil {
		klog.FromContext(ctx).Error(err, "Building test images failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, out, cache string) error {
	logger := klog.FromContext(ctx)
	start := time.Now()
	debs, err := resolveDebs(ctx, packages)
	if err != nil {
		return err
	}
	stamp, err := computeStamp(ctx, debs)
	if err != nil {
		return err
	}
	if upToDate(out, stamp) {
		logger.Info("Test images are up to date", "out", out, "stamp", stamp[:12], "elapsed", time.Since(start).Round(time.Millisecond))
		return printLayout(out)
	}
	if err := fetchDebs(ctx, cache, debs); err != nil {
		return err
	}
	pool, err := loadPool(ctx, cache, debs)
	if err != nil {
		return err
	}
	ls, err := buildLayers(ctx, pool)
	if err != nil {
		return err
	}
	items, err := buildAll(ctx, ls)
	if err != nil {
		return err
	}
	if err := writeAtomically(out, stamp, items); err != nil {
		return err
	}
	logger.Info("Built test images", "out", out, "references", len(items), "elapsed", time.Since(start).Round(time.Millisecond))
	return printLayout(out)
}

// computeStamp hashes everything the output depends on: this program's
// source, the image-building library's revision, the exact .deb files and
// the Go release that compiles the nonewprivs program.
func computeStamp(ctx context.Context, debs []deb) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "imagebuild %s\n", imagebuild.Revision)
	err := fs.WalkDir(sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sources.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "source %s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash sources: %w", err)
	}
	for _, d := range debs {
		fmt.Fprintf(h, "deb %s %s %s\n", d.Name, d.File, d.SHA256)
	}
	gover, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	fmt.Fprintf(h, "go %s\n", strings.TrimSpace(string(gover)))
	return hex.EncodeToString(h.Sum(nil)), nil
}

func upToDate(out, stamp string) bool {
	b, err := os.ReadFile(filepath.Join(out, stampFile))
	if err != nil || strings.TrimSpace(string(b)) != stamp {
		return false
	}
	_, err = os.Stat(filepath.Join(out, "index.json"))
	return err == nil
}

// writeAtomically writes the layout next to out and renames it into place,
// so an interrupted build never leaves a half layout that looks complete.
func writeAtomically(out, stamp string, items []imagebuild.Tagged) (err error) {
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".test-images-*")
	if err != nil {
		return fmt.Errorf("temp layout dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := imagebuild.WriteLayout(tmp, items); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, stampFile), []byte(stamp+"\n"), 0o644); err != nil {
		return fmt.Errorf("write stamp: %w", err)
	}
	if err := os.RemoveAll(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove old layout %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("move layout into %s: %w", out, err)
	}
	return nil
}

// printLayout lists every reference with its manifest kind and digest.
func printLayout(dir string) error {
	items, err := imagebuild.ReadLayout(dir)
	if err != nil {
		return err
	}
	for _, it := range items {
		d, err := it.Item.Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", it.Ref, err)
		}
		fmt.Printf("%-70s %-50s %s\n", it.Ref, itemKind(it.Item), d)
	}
	return nil
}
