package image

import (
	"fmt"
	"strings"

	"github.com/cri-mini/cri-mini/pkg/store"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is the name CRI clients expect for Docker Hub; the registry library calls it
// "index.docker.io" internally.
const dockerHub = "docker.io"

// reference is a parsed, normalised image reference.
type reference struct {
	registry   string // as users write it: "docker.io", "registry.k8s.io", "127.0.0.1:5000"
	repository string // "library/busybox"
	tag        string // "" when pulled by digest
	digest     string // "sha256:..." or ""
	remote     name.Reference
}

// parseReference normalises ref the way CRI clients expect: "busybox" becomes
// "docker.io/library/busybox:latest". A reference with both a tag and a digest is resolved by
// its digest, as containerd does; the tag is kept only for display.
func parseReference(ref string) (reference, error) {
	if ref == "" {
		return reference{}, fmt.Errorf("empty image reference: %w", store.ErrInvalidArgument)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return reference{}, fmt.Errorf("parse image reference %q: %v: %w", ref, err, store.ErrInvalidArgument)
	}
	out := reference{
		registry:   r.Context().RegistryStr(),
		repository: r.Context().RepositoryStr(),
		remote:     r,
	}
	if out.registry == name.DefaultRegistry {
		out.registry = dockerHub
	}
	switch v := r.(type) {
	case name.Tag:
		out.tag = v.TagStr()
	case name.Digest:
		out.digest = v.DigestStr()
	}
	return out, nil
}

// Name is the repository with its registry: "docker.io/library/busybox".
func (r reference) Name() string { return r.registry + "/" + r.repository }

// String is the canonical form used in RepoTags ("name:tag") or RepoDigests ("name@digest").
func (r reference) String() string {
	if r.digest != "" {
		return r.Name() + "@" + r.digest
	}
	return r.Name() + ":" + r.tag
}

// apiHost is the host name the registry client uses in request URLs for this reference.
func (r reference) apiHost() string { return r.remote.Context().RegistryStr() }

// digestRef is the repository-digest form of this reference for digest d.
func (r reference) digestRef(d string) string { return r.Name() + "@" + d }

// isHexID reports whether s looks like (a prefix of) an image ID without the algorithm.
func isHexID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
