// Package imagebuild assembles container images from in-memory file trees,
// byte-for-byte reproducibly: the same trees and configs always give the same
// layer, config, manifest and index digests.
package imagebuild

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Kind is the type of a tree entry.
type Kind int

// Entry kinds. Devices, fifos and sockets are never needed in the test images
// (the runtime creates /dev itself), so they are not representable.
const (
	KindDir Kind = iota
	KindFile
	KindSymlink
)

// Inode is the shared part of a regular file: every path that points at the
// same Inode is a hard link, so mode and owner are shared as the kernel does.
type Inode struct {
	Data []byte
	Mode int64 // permission bits including setuid/setgid/sticky
	UID  int
	GID  int
}

// Entry is one path of a Tree.
type Entry struct {
	Kind  Kind
	Mode  int64 // directories and symlinks; files use Inode.Mode
	UID   int
	GID   int
	Link  string // symlink target, verbatim
	Inode *Inode // regular files
}

// Tree is an in-memory root filesystem keyed by clean absolute paths.
type Tree struct {
	entries map[string]*Entry
}

// NewTree returns an empty tree holding only "/".
func NewTree() *Tree {
	return &Tree{entries: map[string]*Entry{"/": {Kind: KindDir, Mode: 0o755}}}
}

// Clean turns any of "./a/b", "a/b/", "/a//b" into "/a/b".
func Clean(p string) string {
	return path.Clean("/" + strings.TrimPrefix(p, "./"))
}

// Get returns the entry at p, or nil.
func (t *Tree) Get(p string) *Entry {
	return t.entries[Clean(p)]
}

// Paths returns every path but "/" in lexical order. A parent always sorts
// before its children because it is a prefix of them.
func (t *Tree) Paths() []string {
	out := make([]string, 0, len(t.entries))
	for p := range t.entries {
		if p != "/" {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// ensureParents creates missing parent directories as root-owned 0755, the
// mode a package manager or image builder would give them.
func (t *Tree) ensureParents(p string) error {
	dir := path.Dir(p)
	if dir == p {
		return nil
	}
	if e, ok := t.entries[dir]; ok {
		if e.Kind != KindDir {
			return fmt.Errorf("parent %s of %s is not a directory", dir, p)
		}
		return nil
	}
	if err := t.ensureParents(dir); err != nil {
		return err
	}
	t.entries[dir] = &Entry{Kind: KindDir, Mode: 0o755}
	return nil
}

func (t *Tree) put(p string, e *Entry) error {
	p = Clean(p)
	if p == "/" {
		if e.Kind != KindDir {
			return errors.New("root must be a directory")
		}
		t.entries[p] = e
		return nil
	}
	if err := t.ensureParents(p); err != nil {
		return err
	}
	if old, ok := t.entries[p]; ok && old.Kind == KindDir && e.Kind != KindDir {
		// Replacing a directory would orphan its children in the map.
		for q := range t.entries {
			if strings.HasPrefix(q, p+"/") {
				return fmt.Errorf("replace non-empty directory %s", p)
			}
		}
	}
	t.entries[p] = e
	return nil
}

// AddDir adds (or updates the metadata of) a directory.
func (t *Tree) AddDir(p string, mode int64, uid, gid int) error {
	return t.put(p, &Entry{Kind: KindDir, Mode: mode, UID: uid, GID: gid})
}

// AddFile adds a regular file with its own inode.
func (t *Tree) AddFile(p string, data []byte, mode int64, uid, gid int) error {
	return t.put(p, &Entry{Kind: KindFile, Inode: &Inode{Data: data, Mode: mode, UID: uid, GID: gid}})
}

// AddSymlink adds a symbolic link owned by root.
func (t *Tree) AddSymlink(p, target string) error {
	return t.put(p, &Entry{Kind: KindSymlink, Mode: 0o777, Link: target})
}

// AddHardlink makes p another name of the regular file at existing.
func (t *Tree) AddHardlink(p, existing string) error {
	e := t.Get(existing)
	if e == nil || e.Kind != KindFile {
		return fmt.Errorf("hard link %s: %s is not a regular file", p, existing)
	}
	return t.put(p, &Entry{Kind: KindFile, Inode: e.Inode})
}

// CopyFrom copies the entry at p from src, sharing the inode of a file, so a
// file copied twice under two names from one source stays one inode.
func (t *Tree) CopyFrom(src *Tree, p string) error {
	e := src.Get(p)
	if e == nil {
		return fmt.Errorf("copy %s: not found", p)
	}
	c := *e
	return t.put(p, &c)
}

// Resolve follows symlinks in every component of p inside the tree (never
// outside it: ".." stops at "/") and returns the final clean path. ".." is
// applied after the link before it is followed, as the kernel does. Links
// are followed at most 40 times, the kernel's limit.
func (t *Tree) Resolve(p string) (string, error) {
	parts := strings.Split(p, "/")
	cur := "/"
	hops := 0
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		e := t.entries[next]
		if e == nil || e.Kind != KindSymlink {
			cur = next
			continue
		}
		hops++
		if hops > 40 {
			return "", fmt.Errorf("resolve %s: too many levels of symbolic links", p)
		}
		if strings.HasPrefix(e.Link, "/") {
			cur = "/"
		}
		parts = append(strings.Split(e.Link, "/"), parts...)
	}
	return cur, nil
}

// CopyResolved copies p and, when it is a symlink, every link on the way to
// the file it names, so a library copied as "libfoo.so.1" keeps working.
func (t *Tree) CopyResolved(src *Tree, p string) error {
	p = Clean(p)
	for i := 0; i < 40; i++ {
		e := src.Get(p)
		if e == nil {
			return fmt.Errorf("copy %s: not found", p)
		}
		// A symlinked parent directory (e.g. /lib64) is copied as it is in
		// the source, so the same path resolves the same way in the image.
		if err := t.copyParents(src, p); err != nil {
			return err
		}
		if err := t.CopyFrom(src, p); err != nil {
			return err
		}
		if e.Kind != KindSymlink {
			return nil
		}
		target := e.Link
		if !strings.HasPrefix(target, "/") {
			// Not path.Join: ".." must apply after links, not lexically.
			target = path.Dir(p) + "/" + target
		}
		resolved, err := src.Resolve(target)
		if err != nil {
			return err
		}
		p = resolved
	}
	return fmt.Errorf("copy %s: too many levels of symbolic links", p)
}

// copyParents copies the parent directories of p with the metadata they have
// in src, when the target tree does not have them yet.
func (t *Tree) copyParents(src *Tree, p string) error {
	dir := path.Dir(p)
	if dir == "/" || t.entries[dir] != nil {
		return nil
	}
	if err := t.copyParents(src, dir); err != nil {
		return err
	}
	if e := src.Get(dir); e != nil && e.Kind == KindDir {
		c := *e
		t.entries[dir] = &c
		return nil
	}
	return t.ensureParents(p)
}

// Merge copies every entry of src over t, sharing inodes.
func (t *Tree) Merge(src *Tree) error {
	for _, p := range src.Paths() {
		if err := t.CopyFrom(src, p); err != nil {
			return err
		}
	}
	return nil
}

// ReadTar loads a tar stream (such as `dpkg-deb --fsys-tarfile`) into a new
// tree, keeping owners, modes, symlinks and hard links.
func ReadTar(r io.Reader) (*Tree, error) {
	t := NewTree()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		p := Clean(h.Name)
		mode := h.Mode & 0o7777
		switch h.Typeflag {
		case tar.TypeDir:
			err = t.AddDir(p, mode, h.Uid, h.Gid)
		case tar.TypeReg:
			data, rerr := io.ReadAll(tr)
			if rerr != nil {
				return nil, fmt.Errorf("read tar entry %s: %w", p, rerr)
			}
			err = t.AddFile(p, data, mode, h.Uid, h.Gid)
		case tar.TypeSymlink:
			err = t.AddSymlink(p, h.Linkname)
		case tar.TypeLink:
			err = t.AddHardlink(p, Clean(h.Linkname))
		default:
			// Package payloads hold no devices or fifos; skipping keeps the
			// tree representable without silently changing a file's type.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tar entry %s: %w", p, err)
		}
	}
}
