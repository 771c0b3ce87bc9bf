package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// tarOf builds a tar stream from headers; regular files get their Linkname as content to keep
// the tables short.
func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Linkname)
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name, content string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Linkname: content}
}

// snapshot lists every path below dir with its size and mtime, to prove that nothing changed.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + fi.ModTime().String() + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestApplyHostile(t *testing.T) {
	base := t.TempDir()
	sentinel := filepath.Join(base, "sentinel")
	if err := os.MkdirAll(sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sentinel, "passwd"), []byte("root"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		hdrs  []*tar.Header
		entry string // the entry the error must name
	}{
		{"dotdot", []*tar.Header{file("../../sentinel/x", "pwned")}, "../../sentinel/x"},
		{"dotdot inside", []*tar.Header{file("a/../../sentinel/x", "pwned")}, "a/../../sentinel/x"},
		{"absolute", []*tar.Header{file(filepath.Join(sentinel, "x"), "pwned")}, filepath.Join(sentinel, "x")},
		{"symlink parent", []*tar.Header{
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: sentinel},
			file("a/passwd", "pwned"),
		}, "a/passwd"},
		{"relative symlink parent", []*tar.Header{
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../" + sentinel},
			{Name: "a/sub/", Typeflag: tar.TypeDir, Mode: 0o755},
		}, "a/sub/"},
		{"hard link to host file", []*tar.Header{
			{Name: "h", Typeflag: tar.TypeLink, Linkname: filepath.Join(sentinel, "passwd")},
		}, "h"},
		{"hard link dotdot", []*tar.Header{
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "../sentinel/passwd"},
		}, "h"},
		{"hard link through symlink", []*tar.Header{
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: sentinel},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "a/passwd"},
		}, "h"},
		{"whiteout dotdot", []*tar.Header{file("../.wh.x", "")}, "../.wh.x"},
		{"whiteout names dotdot", []*tar.Header{file(".wh...", "")}, ".wh..."},
		{"whiteout below symlink", []*tar.Header{
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: sentinel},
			file("a/.wh.passwd", ""),
		}, "a/.wh.passwd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, base)
			dir := filepath.Join(t.TempDir(), "layer")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			_, err := Apply(context.Background(), bytes.NewReader(tarOf(t, tc.hdrs...)), dir, Options{Chown: os.Geteuid() == 0})
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("Apply error = %v, want an EntryError", err)
			}
			if ee.Name != tc.entry || !strings.Contains(err.Error(), tc.entry) {
				t.Fatalf("error %q names %q, want %q", err, ee.Name, tc.entry)
			}
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Fatalf("error %v is not ErrUnsafeEntry", err)
			}
			if after := snapshot(t, base); after != before {
				t.Fatalf("files outside the layer changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestApplyContent(t *testing.T) {
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	data := tarOf(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o751, ModTime: mtime},
		&tar.Header{Name: "etc/conf", Typeflag: tar.TypeReg, Linkname: "hello", Mode: 0o640, ModTime: mtime},
		&tar.Header{Name: "etc/link", Typeflag: tar.TypeLink, Linkname: "etc/conf"},
		&tar.Header{Name: "etc/sym", Typeflag: tar.TypeSymlink, Linkname: "/does/not/matter"},
		&tar.Header{Name: "deep/er/file", Typeflag: tar.TypeReg, Linkname: "x"},
		&tar.Header{Name: "replaced", Typeflag: tar.TypeReg, Linkname: "old"},
		&tar.Header{Name: "replaced", Typeflag: tar.TypeReg, Linkname: "new"},
		&tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Devmajor: 8, Devminor: 0},
		&tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o600},
	)
	for _, comp := range []string{"none", "gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			var blob bytes.Buffer
			switch comp {
			case "none":
				blob.Write(data)
			case "gzip":
				zw := gzip.NewWriter(&blob)
				zw.Write(data)
				zw.Close()
			case "zstd":
				zw, err := zstd.NewWriter(&blob)
				if err != nil {
					t.Fatal(err)
				}
				zw.Write(data)
				zw.Close()
			}
			rc, err := Decompress(&blob)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			dir := t.TempDir()
			st, err := Apply(context.Background(), rc, dir, Options{Chown: os.Geteuid() == 0})
			if err != nil {
				t.Fatal(err)
			}
			if st.Inodes == 0 || st.Bytes == 0 {
				t.Errorf("stats %+v, want non-zero", st)
			}
			checks := []struct {
				path string
				want string
			}{
				{"etc/conf", "hello"},
				{"etc/link", "hello"},
				{"deep/er/file", "x"},
				{"replaced", "new"},
			}
			for _, c := range checks {
				b, err := os.ReadFile(filepath.Join(dir, c.path))
				if err != nil || string(b) != c.want {
					t.Errorf("%s = %q, %v; want %q", c.path, b, err, c.want)
				}
			}
			var a, b unix.Stat_t
			unix.Lstat(filepath.Join(dir, "etc/conf"), &a)
			unix.Lstat(filepath.Join(dir, "etc/link"), &b)
			if a.Ino != b.Ino || a.Nlink != 2 {
				t.Errorf("hard link not kept: inodes %d %d nlink %d", a.Ino, b.Ino, a.Nlink)
			}
			if l, err := os.Readlink(filepath.Join(dir, "etc/sym")); err != nil || l != "/does/not/matter" {
				t.Errorf("symlink = %q, %v", l, err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "dev/sda")); !os.IsNotExist(err) {
				t.Errorf("block device was created (err %v): device nodes must be skipped", err)
			}
			fi, err := os.Stat(filepath.Join(dir, "etc"))
			if err != nil || fi.Mode().Perm() != 0o751 || !fi.ModTime().Equal(mtime) {
				t.Errorf("etc: %v mode %v mtime %v", err, fi.Mode(), fi.ModTime())
			}
			fi, err = os.Stat(filepath.Join(dir, "etc/conf"))
			if err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
				t.Errorf("etc/conf: %v mode %v mtime %v", err, fi.Mode(), fi.ModTime())
			}
			if fi, err := os.Lstat(filepath.Join(dir, "fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
				t.Errorf("fifo: %v %v", err, fi)
			}
		})
	}
}

func TestApplyRootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("owners, whiteout devices and trusted xattrs need root")
	}
	data := tarOf(t,
		&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "bin/su", Typeflag: tar.TypeReg, Linkname: "elf", Mode: 0o4755, Uid: 0, Gid: 0},
		&tar.Header{Name: "bin/own", Typeflag: tar.TypeReg, Linkname: "x", Mode: 0o2750, Uid: 1234, Gid: 5678},
		&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		&tar.Header{Name: "bin/ping", Typeflag: tar.TypeReg, Linkname: "p", Mode: 0o755,
			PAXRecords: map[string]string{"SCHILY.xattr.user.test": "v", "SCHILY.xattr.trusted.overlay.redirect": "/etc"}},
		&tar.Header{Name: "bin/lnk", Typeflag: tar.TypeSymlink, Linkname: "su", Uid: 42, Gid: 43},
		&tar.Header{Name: "gone/.wh.file", Typeflag: tar.TypeReg},
		&tar.Header{Name: "opaque/.wh..wh..opq", Typeflag: tar.TypeReg},
		&tar.Header{Name: "keep", Typeflag: tar.TypeReg, Linkname: "same layer wins"},
		&tar.Header{Name: ".wh.keep", Typeflag: tar.TypeReg},
		&tar.Header{Name: "wo", Typeflag: tar.TypeChar, Devmajor: 0, Devminor: 0},
	)
	dir := t.TempDir()
	if _, err := Apply(context.Background(), bytes.NewReader(data), dir, Options{Chown: true}); err != nil {
		t.Fatal(err)
	}
	stat := func(p string) unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		return st
	}
	tests := []struct {
		path     string
		mode     uint32 // full st_mode
		uid, gid uint32
	}{
		{"bin/su", unix.S_IFREG | 0o4755, 0, 0},
		{"bin/own", unix.S_IFREG | 0o2750, 1234, 5678},
		{"tmp", unix.S_IFDIR | 0o1777, 0, 0},
		{"bin/lnk", unix.S_IFLNK | 0o777, 42, 43},
		{"gone/file", unix.S_IFCHR, 0, 0},
		{"wo", unix.S_IFCHR, 0, 0},
		{"keep", unix.S_IFREG | 0o644, 0, 0},
	}
	for _, tc := range tests {
		st := stat(tc.path)
		if st.Mode != tc.mode || st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("%s: mode %o uid %d gid %d, want %o %d %d", tc.path, st.Mode, st.Uid, st.Gid, tc.mode, tc.uid, tc.gid)
		}
		if tc.mode == unix.S_IFCHR && st.Rdev != 0 {
			t.Errorf("%s: rdev %d, want 0/0 whiteout", tc.path, st.Rdev)
		}
	}
	buf := make([]byte, 16)
	n, err := unix.Getxattr(filepath.Join(dir, "opaque"), "trusted.overlay.opaque", buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr = %q, %v", buf[:n], err)
	}
	n, err = unix.Getxattr(filepath.Join(dir, "bin/ping"), "user.test", buf)
	if (err == nil && string(buf[:n]) != "v") || (err != nil && !errors.Is(err, unix.ENOTSUP)) {
		t.Errorf("user xattr = %q, %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(filepath.Join(dir, "bin/ping"), "trusted.overlay.redirect", buf); err == nil {
		t.Errorf("trusted.overlay.redirect from the layer was applied")
	}
}
