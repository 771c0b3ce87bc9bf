package imagebuild

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"strings"
)

// LibDirs are the directories Debian's dynamic loader searches without an
// ld.so.cache, in its order: the multiarch directories first.
var LibDirs = []string{
	"/lib/x86_64-linux-gnu",
	"/usr/lib/x86_64-linux-gnu",
	"/lib64",
	"/lib",
	"/usr/lib",
}

// elfDeps returns the program interpreter (PT_INTERP, empty for a static
// binary) and the DT_NEEDED sonames of an ELF file. ok is false for data that
// is not ELF at all, such as a shell script.
func elfDeps(data []byte) (interp string, needed []string, ok bool, err error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return "", nil, false, nil
		}
		return "", nil, false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", nil, true, fmt.Errorf("read PT_INTERP: %w", err)
		}
		interp = strings.TrimRight(string(b), "\x00")
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return "", nil, true, fmt.Errorf("read DT_NEEDED: %w", err)
	}
	return interp, needed, true, nil
}

// findLib returns the path of soname in the first of LibDirs where pool has it.
func findLib(pool *Tree, soname string) (string, bool) {
	for _, d := range LibDirs {
		p := path.Join(d, soname)
		if r, err := pool.Resolve(p); err == nil {
			if e := pool.Get(r); e != nil && e.Kind == KindFile {
				return p, true
			}
		}
	}
	return "", false
}

// AddLibraries copies into dst, from pool, the interpreter and every shared
// library the ELF files at bins need, transitively, as the dynamic loader
// would find them. Libraries already present in any of have (lower layers of
// the same image) are not copied again.
func AddLibraries(dst, pool *Tree, bins []string, have ...*Tree) error {
	present := func(p string) bool {
		if dst.Get(p) != nil {
			return true
		}
		for _, h := range have {
			if h.Get(p) != nil {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	queue := append([]string(nil), bins...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		data, err := fileData(p, append([]*Tree{dst, pool}, have...))
		if err != nil {
			return err
		}
		interp, needed, ok, err := elfDeps(data)
		if err != nil {
			return fmt.Errorf("elf %s: %w", p, err)
		}
		if !ok {
			continue
		}
		var libs []string
		if interp != "" {
			if pool.Get(interp) == nil && !present(interp) {
				return fmt.Errorf("%s: interpreter %s not in the package pool", p, interp)
			}
			libs = append(libs, interp)
		}
		for _, so := range needed {
			lp, found := findLib(pool, so)
			for _, h := range have {
				if !found {
					lp, found = findLib(h, so)
				}
			}
			if !found {
				return fmt.Errorf("%s needs %s: not in the package pool (add its package)", p, so)
			}
			libs = append(libs, lp)
		}
		for _, lp := range libs {
			if !present(lp) {
				if err := dst.CopyResolved(pool, lp); err != nil {
					return fmt.Errorf("copy library %s for %s: %w", lp, p, err)
				}
			}
			queue = append(queue, lp)
		}
	}
	return nil
}

// fileData reads the regular file at p (following symlinks) from the first
// tree that has it.
func fileData(p string, trees []*Tree) ([]byte, error) {
	for _, t := range trees {
		r, err := t.Resolve(p)
		if err != nil {
			continue
		}
		if e := t.Get(r); e != nil && e.Kind == KindFile {
			return e.Inode.Data, nil
		}
	}
	return nil, fmt.Errorf("read %s: no such file in the image or the package pool", p)
}
