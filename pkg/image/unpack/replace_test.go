package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// TestApplyDirReplaced checks that a directory replaced later in the same layer by a
// non-directory is accepted (as Docker and containerd accept it), the replacement wins, and
// nothing leaks outside through the replacement.
func TestApplyDirReplaced(t *testing.T) {
	outside := t.TempDir()
	mtime := time.Unix(1_600_000_000, 0)
	dir := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}
	}
	tests := []struct {
		name  string
		hdrs  []*tar.Header
		check func(t *testing.T, root string)
	}{
		{
			name: "dir with subdir replaced by symlink",
			hdrs: []*tar.Header{dir("a"), dir("a/b"), file("a/b/f", "x"),
				{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside, ModTime: mtime}},
			check: func(t *testing.T, root string) {
				if target, err := os.Readlink(filepath.Join(root, "a")); err != nil || target != outside {
					t.Fatalf("a -> %q (%v), want symlink to %q", target, err, outside)
				}
			},
		},
		{
			name: "dir replaced by regular file",
			hdrs: []*tar.Header{dir("a"), dir("a/b"), file("a", "file")},
			check: func(t *testing.T, root string) {
				if b, err := os.ReadFile(filepath.Join(root, "a")); err != nil || string(b) != "file" {
					t.Fatalf("a = %q (%v), want the file", b, err)
				}
			},
		},
		{
			name: "dir replaced by symlink then recreated",
			hdrs: []*tar.Header{dir("a"), dir("a/b"), {Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/"}, dir("a")},
			check: func(t *testing.T, root string) {
				fi, err := os.Lstat(filepath.Join(root, "a"))
				if err != nil || !fi.IsDir() || !fi.ModTime().Equal(mtime) {
					t.Fatalf("a: %v (%v), want a directory with mtime %v", fi, err, mtime)
				}
				if _, err := os.Lstat(filepath.Join(root, "a/b")); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a/b survived the replacement: %v", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := Apply(context.Background(), bytes.NewReader(tarOf(t, tc.hdrs...)), root, Options{}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			tc.check(t, root)
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("%d entries written outside the layer", len(entries))
			}
		})
	}
}

// TestApplyUserXattrs checks that user.* attributes on entries that cannot carry them
// (symlinks, fifos) do not fail the layer, while those of regular files are kept.
func TestApplyUserXattrs(t *testing.T) {
	probe := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(probe, "user.probe", []byte("1"), 0); err != nil {
		t.Skipf("filesystem of the temp dir has no user xattrs: %v", err)
	}
	xa := map[string]string{"SCHILY.xattr.user.test": "v"}
	tests := []struct {
		name     string
		hdr      *tar.Header
		wantAttr bool
	}{
		{"symlink", &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "target", PAXRecords: xa}, false},
		{"fifo", &tar.Header{Name: "p", Typeflag: tar.TypeFifo, Mode: 0o644, PAXRecords: xa}, false},
		{"regular file", &tar.Header{Name: "f", Typeflag: tar.TypeReg, Linkname: "x", PAXRecords: xa}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := Apply(context.Background(), bytes.NewReader(tarOf(t, tc.hdr)), root, Options{}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			buf := make([]byte, 16)
			n, err := unix.Lgetxattr(filepath.Join(root, tc.hdr.Name), "user.test", buf)
			if got := err == nil && string(buf[:n]) == "v"; got != tc.wantAttr {
				t.Fatalf("user.test present = %v (%v), want %v", got, err, tc.wantAttr)
			}
		})
	}
}

// zstdFrame builds an empty zstd frame whose header asks for a window of 1<<windowLog bytes.
func zstdFrame(windowLog int) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd}
	// Frame header descriptor: no single segment, no checksum, no dictionary, no content size.
	b = append(b, 0x00)
	// Window descriptor: exponent (windowLog-10) in the high 5 bits, mantissa 0.
	b = append(b, byte(windowLog-10)<<3)
	// One last, raw, empty block.
	return append(b, 0x01, 0x00, 0x00)
}

func TestDecompressZstdWindow(t *testing.T) {
	tests := []struct {
		name      string
		windowLog int
		wantErr   bool
	}{
		{"1 MiB", 20, false},
		{"128 MiB (zstd --long)", 27, false},
		{"256 MiB", 28, true},
		{"512 MiB", 29, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			zr, err := Decompress(bytes.NewReader(zstdFrame(tc.windowLog)))
			if err == nil {
				defer zr.Close()
				_, err = io.ReadAll(zr)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, zstd.ErrWindowSizeExceeded) {
				t.Fatalf("err = %v, want ErrWindowSizeExceeded", err)
			}
		})
	}
}
