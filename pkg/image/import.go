package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"

	"github.com/cri-mini/cri-mini/pkg/image/unpack"
	"github.com/cri-mini/cri-mini/pkg/store"
	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"k8s.io/klog/v2"
)

// Annotations naming an image in an OCI layout: containerd's full name, and the OCI ref name
// (a full reference when written by containerd or skopeo, sometimes only a tag).
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationOCIRefName     = "org.opencontainers.image.ref.name"
)

var sha256Name = regexp.MustCompile(`(?:^|/)([a-f0-9]{64})(?:\.json)?$`)

// Import loads the images of an OCI layout (a directory or a tar of one) or a `docker save`
// archive, with the same verification as a pull: manifests and configs by digest, layers by
// digest where the archive names it and always by diffID.
func (s *Service) Import(ctx context.Context, p string) ([]*Image, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", p, err)
	}
	dir := p
	if !fi.IsDir() {
		// The archive is unpacked with the layer unpacker: it is as untrusted as a layer.
		tmp, err := os.MkdirTemp(s.tmpDir, "import-")
		if err != nil {
			return nil, fmt.Errorf("create import dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", p, err)
		}
		defer f.Close()
		zr, err := unpack.Decompress(f)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", p, err)
		}
		defer zr.Close()
		if _, err := unpack.Apply(ctx, zr, tmp, unpack.Options{}); err != nil {
			return nil, fmt.Errorf("import %s: extract archive: %w", p, err)
		}
		dir = tmp
	}
	if _, err := os.Stat(mustJoin(dir, "manifest.json")); err == nil {
		return s.importDocker(ctx, dir)
	}
	if _, err := os.Stat(mustJoin(dir, "index.json")); err == nil {
		return s.importOCI(ctx, dir)
	}
	return nil, fmt.Errorf("import %s: neither a docker archive nor an OCI layout: %w", p, store.ErrInvalidArgument)
}

// mustJoin resolves name inside root, following symlinks only within root (docker archives link
// repeated layers to each other).
func mustJoin(root, name string) string {
	p, err := securejoin.SecureJoin(root, name)
	if err != nil {
		// SecureJoin only fails on I/O errors; a path that cannot exist makes the open fail.
		return path.Join(root, "\x00invalid")
	}
	return p
}

func readLimited(root, name string) ([]byte, error) {
	f, err := os.Open(mustJoin(root, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxManifestSize))
}

type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Service) importDocker(ctx context.Context, dir string) ([]*Image, error) {
	raw, err := readLimited(dir, "manifest.json")
	if err != nil {
		return nil, fmt.Errorf("read docker archive manifest: %w", err)
	}
	var ms []dockerManifest
	if err := json.Unmarshal(raw, &ms); err != nil {
		return nil, fmt.Errorf("parse docker archive manifest: %v: %w", err, store.ErrInvalidArgument)
	}
	var out []*Image
	for _, m := range ms {
		cfgRaw, err := readLimited(dir, m.Config)
		if err != nil {
			return out, fmt.Errorf("read config %s: %w", m.Config, err)
		}
		id := fmt.Sprintf("sha256:%x", sha256.Sum256(cfgRaw))
		// The config's file name is its digest: check it, as a pull checks the manifest's.
		if g := sha256Name.FindStringSubmatch(m.Config); g != nil && "sha256:"+g[1] != id {
			return out, fmt.Errorf("config %s has digest %s: %w", m.Config, id, ErrDigestMismatch)
		}
		cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
		if err != nil {
			return out, fmt.Errorf("parse config %s: %w", m.Config, err)
		}
		src := &imageSource{id: id, config: cfg, size: uint64(len(cfgRaw))}
		for _, l := range m.Layers {
			ls := layerSource{size: -1}
			if g := sha256Name.FindStringSubmatch(l); g != nil && path.Base(path.Dir(l)) == "sha256" {
				ls.digest = v1.Hash{Algorithm: "sha256", Hex: g[1]}
			}
			if fi, err := os.Stat(mustJoin(dir, l)); err == nil {
				src.size += uint64(fi.Size())
			}
			ls.open = func(context.Context) (io.ReadCloser, error) { return os.Open(mustJoin(dir, l)) }
			src.layers = append(src.layers, ls)
		}
		var tags []string
		for _, t := range m.RepoTags {
			r, err := parseReference(t)
			if err != nil {
				return out, fmt.Errorf("archive tag %q: %w", t, err)
			}
			tags = append(tags, r.String())
		}
		img, err := s.ingest(ctx, src, tags, nil)
		if err != nil {
			return out, fmt.Errorf("import image %s: %w", id, err)
		}
		out = append(out, img)
	}
	return out, nil
}

func (s *Service) importOCI(ctx context.Context, dir string) ([]*Image, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open OCI layout: %w", err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("read OCI layout index: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("parse OCI layout index: %w", err)
	}
	blob := func(h v1.Hash) ([]byte, error) {
		rc, err := lp.Blob(h)
		if err != nil {
			return nil, fmt.Errorf("read blob %s: %w", h, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxManifestSize))
		if err != nil {
			return nil, fmt.Errorf("read blob %s: %w", h, err)
		}
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); got != h.String() {
			return nil, fmt.Errorf("blob %s has digest %s: %w", h, got, ErrDigestMismatch)
		}
		return b, nil
	}
	var out []*Image
	for _, d := range im.Manifests {
		var tags, digests []string
		for _, a := range []string{d.Annotations[annotationContainerdName], d.Annotations[annotationOCIRefName]} {
			if r, err := parseReference(a); a != "" && err == nil && isFullName(a) {
				if r.tag != "" {
					tags = append(tags, r.String())
				}
				digests = append(digests, r.digestRef(d.Digest.String()))
				break
			}
		}
		m, err := s.ociImageManifest(d, blob)
		if err != nil {
			return out, err
		}
		cfgRaw, err := blob(m.Config.Digest)
		if err != nil {
			return out, err
		}
		src, err := newImageSource(m, cfgRaw)
		if err != nil {
			return out, err
		}
		for i, l := range m.Layers {
			src.layers[i].open = func(context.Context) (io.ReadCloser, error) { return lp.Blob(l.Digest) }
		}
		img, err := s.ingest(ctx, src, tags, digests)
		if err != nil {
			return out, fmt.Errorf("import image %s: %w", src.id, err)
		}
		klog.FromContext(ctx).V(2).Info("Image imported", "image", img.ID, "tags", img.RepoTags)
		out = append(out, img)
	}
	return out, nil
}

// ociImageManifest follows an index entry down to the image manifest of our platform.
func (s *Service) ociImageManifest(d v1.Descriptor, blob func(v1.Hash) ([]byte, error)) (*v1.Manifest, error) {
	for depth := 0; depth < 4; depth++ {
		raw, err := blob(d.Digest)
		if err != nil {
			return nil, err
		}
		mt := d.MediaType
		if mt == "" {
			mt = sniffMediaType(raw)
		}
		switch {
		case mt.IsImage():
			return parseImageManifest(raw)
		case mt.IsIndex():
			idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return nil, fmt.Errorf("parse index %s: %w", d.Digest, err)
			}
			if d, err = selectPlatform(idx, s.opts.Platform); err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
		default:
			return nil, fmt.Errorf("unsupported manifest type %q: %w", mt, store.ErrInvalidArgument)
		}
	}
	return nil, fmt.Errorf("manifest indexes nested too deep: %w", store.ErrInvalidArgument)
}

// isFullName reports whether an annotation holds a repository name rather than a bare tag
// ("v1" alone would otherwise normalise to docker.io/library/v1:latest).
func isFullName(s string) bool {
	return bytes.ContainsAny([]byte(s), "/:@")
}
