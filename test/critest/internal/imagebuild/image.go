package imagebuild

import (
	"fmt"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RefAnnotation is the OCI layout annotation naming an index entry.
const RefAnnotation = "org.opencontainers.image.ref.name"

// ManifestKind is how an image is published: both manifest formats, each
// with or without a single-platform index around it, so that a puller's
// every code path is exercised.
type ManifestKind string

// The manifest kinds.
const (
	DockerManifestList ManifestKind = "docker-manifest-list"
	OCIIndex           ManifestKind = "oci-index"
	DockerManifest     ManifestKind = "docker-manifest"
	OCIManifest        ManifestKind = "oci-manifest"
)

func (k ManifestKind) docker() bool { return k == DockerManifestList || k == DockerManifest }

func (k ManifestKind) indexed() bool { return k == DockerManifestList || k == OCIIndex }

// LayerSpec is one layer of an image and the history line describing it.
type LayerSpec struct {
	Layer     v1.Layer
	CreatedBy string
}

// ImageSpec is everything that defines one image.
type ImageSpec struct {
	Layers []LayerSpec
	Config v1.Config
	Kind   ManifestKind
}

// Platform is the only platform the test images are built for.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// Build assembles the image and, for indexed kinds, the index around it.
// The returned value is a v1.Image or a v1.ImageIndex.
func Build(spec ImageSpec) (mutate.Appendable, error) {
	manifestType, configType, layerType := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	if spec.Kind.docker() {
		manifestType, configType, layerType = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	base := mutate.MediaType(empty.Image, manifestType)
	base = mutate.ConfigMediaType(base, configType)
	base, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: Platform.Architecture,
		OS:           Platform.OS,
		Created:      v1.Time{Time: Epoch},
		Config:       spec.Config,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	adds := make([]mutate.Addendum, 0, len(spec.Layers))
	for _, l := range spec.Layers {
		adds = append(adds, mutate.Addendum{
			Layer:     l.Layer,
			MediaType: layerType,
			History:   v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: l.CreatedBy},
		})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	if !spec.Kind.indexed() {
		return img, nil
	}
	indexType := types.OCIImageIndex
	if spec.Kind.docker() {
		indexType = types.DockerManifestList
	}
	platform := Platform
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, indexType),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
	return idx, nil
}

// Tagged is one reference of the layout and what it points to.
type Tagged struct {
	Ref  string
	Item mutate.Appendable
}

// WriteLayout writes an OCI image layout at dir (which must not exist yet or
// be empty) holding every item once per reference, in reference order, so
// index.json itself is reproducible.
func WriteLayout(dir string, items []Tagged) error {
	sorted := append([]Tagged(nil), items...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Ref < sorted[j].Ref })
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("create layout %s: %w", dir, err)
	}
	for _, it := range sorted {
		opt := layout.WithAnnotations(map[string]string{RefAnnotation: it.Ref})
		switch v := it.Item.(type) {
		case v1.ImageIndex:
			err = p.AppendIndex(v, opt)
		case v1.Image:
			err = p.AppendImage(v, opt)
		default:
			err = fmt.Errorf("unsupported item %T", it.Item)
		}
		if err != nil {
			return fmt.Errorf("write %s to layout: %w", it.Ref, err)
		}
	}
	return nil
}

// ReadLayout returns every reference of the layout at dir with the image or
// index it names.
func ReadLayout(dir string) ([]Tagged, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read index of %s: %w", dir, err)
	}
	out := make([]Tagged, 0, len(im.Manifests))
	for _, d := range im.Manifests {
		ref := d.Annotations[RefAnnotation]
		if ref == "" {
			return nil, fmt.Errorf("layout %s: entry %s has no %s", dir, d.Digest, RefAnnotation)
		}
		var item mutate.Appendable
		if d.MediaType.IsIndex() {
			item, err = idx.ImageIndex(d.Digest)
		} else {
			item, err = idx.Image(d.Digest)
		}
		if err != nil {
			return nil, fmt.Errorf("layout %s: load %s (%s): %w", dir, ref, d.Digest, err)
		}
		out = append(out, Tagged{Ref: ref, Item: item})
	}
	return out, nil
}

// Revision names the output format of this package. Change it whenever a
// change here alters the bytes of a built image, so stamped builds rebuild.
const Revision = "1"
