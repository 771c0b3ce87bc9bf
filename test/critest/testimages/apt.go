package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

// deb is one package file as apt would download it.
type deb struct {
	Name   string // package name
	File   string // file name apt-get download gives it
	SHA256 string // from the archive's signed index
}

// resolveDebs asks apt which file and checksum each package's candidate
// version has, without downloading. When apt has no lists yet it runs
// `apt-get update` once and asks again.
func resolveDebs(ctx context.Context, names []string) ([]deb, error) {
	debs, err := printURIs(ctx, names)
	if err == nil {
		return debs, nil
	}
	klog.FromContext(ctx).Info("Package lookup failed, updating apt lists once", "err", err)
	if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
		return nil, fmt.Errorf("apt-get update: %w: %s", uerr, out)
	}
	return printURIs(ctx, names)
}

func printURIs(ctx context.Context, names []string) ([]deb, error) {
	// Run where no .deb exists: apt-get prints nothing for a package whose
	// file is already in the working directory.
	dir, err := os.MkdirTemp("", "testimages-apt-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "--print-uris"}, names...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("apt-get download --print-uris: %w: %s", err, stderr.String())
	}
	byFile := map[string]deb{}
	for _, line := range strings.Split(string(out), "\n") {
		// 'URI' FILE SIZE SHA256:HEX
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasPrefix(f[3], "SHA256:") {
			continue
		}
		byFile[f[1]] = deb{File: f[1], SHA256: strings.TrimPrefix(f[3], "SHA256:")}
	}
	debs := make([]deb, 0, len(names))
	for _, n := range names {
		var found *deb
		for file, d := range byFile {
			if strings.HasPrefix(file, n+"_") {
				d.Name = n
				found = &d
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("apt gave no file for package %s", n)
		}
		debs = append(debs, *found)
	}
	sort.Slice(debs, func(i, j int) bool { return debs[i].Name < debs[j].Name })
	return debs, nil
}

// fetchDebs makes sure every deb is in cache with the checksum apt expects,
// downloading the missing or damaged ones.
func fetchDebs(ctx context.Context, cache string, debs []deb) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("create deb cache %s: %w", cache, err)
	}
	var missing []string
	for _, d := range debs {
		ok, err := checkSHA256(filepath.Join(cache, d.File), d.SHA256)
		if err != nil {
			return err
		}
		if !ok {
			_ = os.Remove(filepath.Join(cache, d.File))
			missing = append(missing, d.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	klog.FromContext(ctx).Info("Downloading packages", "packages", missing, "cache", cache)
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download"}, missing...)...)
	cmd.Dir = cache
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %v: %w: %s", missing, err, out)
	}
	for _, d := range debs {
		ok, err := checkSHA256(filepath.Join(cache, d.File), d.SHA256)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("downloaded %s does not have checksum %s", d.File, d.SHA256)
		}
	}
	return nil
}

func checkSHA256(file, want string) (bool, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", file, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("hash %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == want, nil
}

// readDeb loads a package's payload, with its owners, modes and links, from
// `dpkg-deb --fsys-tarfile` (which handles every compression a .deb uses).
func readDeb(ctx context.Context, file string) (*imagebuild.Tree, error) {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", file, err, stderr.String())
	}
	t, err := imagebuild.ReadTar(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("read payload of %s: %w", file, err)
	}
	return t, nil
}

// loadPool reads every deb into one tree, the source of all files the images
// take from Debian. Packages do not overlap in the files used here.
func loadPool(ctx context.Context, cache string, debs []deb) (*imagebuild.Tree, error) {
	pool := imagebuild.NewTree()
	for _, d := range debs {
		t, err := readDeb(ctx, filepath.Join(cache, d.File))
		if err != nil {
			return nil, err
		}
		if err := pool.Merge(t); err != nil {
			return nil, fmt.Errorf("merge %s: %w", d.Name, err)
		}
	}
	return pool, nil
}
