package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is the modification time of every file and the creation time of every
// image: a fixed instant is what makes two builds produce the same bytes.
var Epoch = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// WriteTar writes the tree as a layer tarball: entries in lexical order,
// fixed mtimes, no user or group names, numeric owners as given. The first
// path (in that order) of a hard-linked inode is written as the file and the
// later ones as links to it, since a link may only name an earlier entry.
func (t *Tree) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	first := map[*Inode]string{}
	for _, p := range t.Paths() {
		e := t.entries[p]
		name := strings.TrimPrefix(p, "/")
		h := &tar.Header{ModTime: Epoch, Format: tar.FormatPAX}
		switch e.Kind {
		case KindDir:
			h.Typeflag, h.Name, h.Mode, h.Uid, h.Gid = tar.TypeDir, name+"/", e.Mode, e.UID, e.GID
		case KindSymlink:
			h.Typeflag, h.Name, h.Linkname, h.Mode, h.Uid, h.Gid = tar.TypeSymlink, name, e.Link, e.Mode, e.UID, e.GID
		case KindFile:
			in := e.Inode
			h.Name, h.Mode, h.Uid, h.Gid = name, in.Mode, in.UID, in.GID
			if prev, ok := first[in]; ok {
				h.Typeflag, h.Linkname = tar.TypeLink, prev
			} else {
				first[in] = name
				h.Typeflag, h.Size = tar.TypeReg, int64(len(in.Data))
			}
		default:
			return fmt.Errorf("tar %s: unknown entry kind %d", p, e.Kind)
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar header %s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Inode.Data); err != nil {
				return fmt.Errorf("tar data %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	return nil
}

// Layer turns the tree into a gzip-compressed layer. The gzip stream is made
// here, not by go-containerregistry, so its header carries no name and no
// time and the compressed digest depends on the content alone. The media type
// of the layer is chosen per image by the manifest that references it.
func (t *Tree) Layer() (v1.Layer, error) {
	var raw bytes.Buffer
	if err := t.WriteTar(&raw); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("gzip writer: %w", err)
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	blob := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer from blob: %w", err)
	}
	return layer, nil
}
