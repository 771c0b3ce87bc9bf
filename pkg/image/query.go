package image

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/cri-mini/cri-mini/pkg/store"
)

// Get finds an image by ID ("sha256:..." or the bare hex), repo tag or repo digest (normalised
// like a pull: "busybox" finds "docker.io/library/busybox:latest"), or unambiguous ID prefix. A
// missing image is an error wrapping store.ErrNotFound, a prefix matching several images one
// wrapping store.ErrInvalidArgument. It never touches disk or network.
func (s *Service) Get(ref string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookup(ref)
}

func (s *Service) lookup(ref string) (*Image, error) {
	if ref == "" {
		return nil, fmt.Errorf("empty image reference: %w", store.ErrInvalidArgument)
	}
	id := ref
	if !strings.HasPrefix(id, "sha256:") && isHexID(id) && len(id) == 64 {
		id = "sha256:" + id
	}
	if img := s.images[id]; img != nil {
		return img, nil
	}
	// Every key of refs is already normalised, and normalising is idempotent: a reference
	// written out in full (as critest and most tools send it) is found without parsing.
	if id, ok := s.refs[ref]; ok {
		return s.images[id], nil
	}
	if canonical, ok := s.normalised(ref); ok {
		if id, ok := s.refs[canonical]; ok {
			return s.images[id], nil
		}
	}
	prefix, hasAlg := strings.CutPrefix(ref, "sha256:")
	if !isHexID(prefix) || (!hasAlg && len(prefix) < 3) {
		return nil, errNotFound(ref)
	}
	var found *Image
	for iid, img := range s.images {
		if strings.HasPrefix(strings.TrimPrefix(iid, "sha256:"), prefix) {
			if found != nil {
				// Not NotFound: Remove treats that as already gone and would report success
				// while removing nothing.
				return nil, fmt.Errorf("image ID prefix %q is ambiguous (matches %s and %s): %w", ref, found.ID, img.ID, store.ErrInvalidArgument)
			}
			found = img
		}
	}
	if found == nil {
		return nil, errNotFound(ref)
	}
	return found, nil
}

// normalised returns the canonical form of ref ("busybox" -> "docker.io/library/busybox:latest"),
// or false when ref is no image reference. kubelet asks ImageStatus about the same short
// references over and over, and parsing one allocates a dozen objects, so results are kept;
// normalising is a pure function, so a kept result can never be stale. lookup runs under mu
// or under writeMu alone (Remove, Use), so the map has its own lock.
func (s *Service) normalised(ref string) (string, bool) {
	s.normMu.Lock()
	defer s.normMu.Unlock()
	if c, ok := s.norm[ref]; ok {
		return c, c != ""
	}
	canonical := ""
	if r, err := parseReference(ref); err == nil {
		canonical = r.String()
	}
	if len(ref) > maxNormalisedLen {
		return canonical, canonical != "" // not kept: the cache is bounded in bytes too
	}
	if len(s.norm) >= maxNormalised {
		clear(s.norm)
	}
	s.norm[ref] = canonical
	return canonical, canonical != ""
}

// List returns the images, sorted by ID; a non-empty filter returns only the image it names
// (as Get resolves it), or nothing. The slice is shared like the images in it: read-only, and
// kept until the index changes, so that listing an unchanged store costs nothing.
func (s *Service) List(filterRef string) []*Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	if filterRef != "" {
		img, err := s.lookup(filterRef)
		if err != nil {
			return nil
		}
		return []*Image{img}
	}
	if s.sorted == nil {
		out := make([]*Image, 0, len(s.images))
		for _, img := range s.images {
			out = append(out, img)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		s.sorted = out
	}
	return s.sorted
}

// LowerDirs returns the layer directories of image id for an overlay mount: base is the
// directory to chdir to (or to open as the fd the names are relative to) and dirs are short
// relative names, top layer first as overlay's lowerdir wants.
func (s *Service) LowerDirs(id string) (base string, dirs []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.lookup(id)
	if err != nil {
		return "", nil, err
	}
	dirs = make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		l := s.layers[img.Layers[i]]
		if l == nil {
			return "", nil, fmt.Errorf("image %s layer %s: %w", img.ID, img.Layers[i], store.ErrNotFound)
		}
		dirs = append(dirs, l.Short)
	}
	return s.layersDir, dirs, nil
}

// FsInfo reports the usage of the layer store (from memory: every layer's size was measured
// when it was unpacked) and of the containers' writable layers dir (walked, since containers
// write there all the time).
func (s *Service) FsInfo() (images FsUsage, writable FsUsage, err error) {
	s.mu.Lock()
	images.Path = s.layersDir
	for _, l := range s.layers {
		images.UsedBytes += uint64(l.Bytes)
		images.Inodes += uint64(l.Inodes)
	}
	s.mu.Unlock()
	if images.Mountpoint, err = mountpoint(s.layersDir); err != nil {
		return images, writable, err
	}
	if s.opts.WritableRoot == "" {
		return images, writable, nil
	}
	writable.Path = s.opts.WritableRoot
	if writable.Mountpoint, err = mountpoint(s.opts.WritableRoot); err != nil {
		return images, writable, err
	}
	writable.UsedBytes, writable.Inodes, err = usage(s.opts.WritableRoot)
	return images, writable, err
}

// usage sums allocated bytes and inodes below dir, counting hard-linked inodes once. Entries
// that vanish during the walk (containers removed meanwhile) are skipped.
func usage(dir string) (bytes, inodes uint64, err error) {
	seen := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measure usage of %s: %w", dir, err)
	}
	return bytes, inodes, nil
}

// mountpoint returns the mountpoint of the filesystem holding dir: the highest ancestor on the
// same device.
func mountpoint(dir string) (string, error) {
	p, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", p, err)
	}
	for p != "/" {
		parent := filepath.Dir(p)
		var pst syscall.Stat_t
		if err := syscall.Stat(parent, &pst); err != nil {
			return "", fmt.Errorf("stat %s: %w", parent, err)
		}
		if pst.Dev != st.Dev {
			return p, nil
		}
		p = parent
	}
	return "/", nil
}
