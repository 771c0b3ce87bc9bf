package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cri-mini/cri-mini/pkg/image/hosts"
	"github.com/cri-mini/cri-mini/pkg/store"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"k8s.io/klog/v2"
)

// maxManifestSize bounds a manifest or config read into memory; real ones are a few KiB.
const maxManifestSize = 8 << 20

// Pull fetches ref from its registry (or the mirrors configured for it) and records it. A pull
// by tag records the tag and the repo digest; a pull by digest records the digest only.
func (s *Service) Pull(ctx context.Context, ref string, auth *Auth) (*Image, error) {
	r, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	log := klog.FromContext(ctx).WithValues("image", r.String())
	ctx = klog.NewContext(ctx, log)
	start := time.Now()
	img, err := s.pull(ctx, r, auth)
	if err != nil {
		return nil, s.wrapCause(ctx, fmt.Errorf("pull image %s: %w", r, err))
	}
	log.V(2).Info("Image pulled", "imageID", img.ID, "duration", time.Since(start).Round(time.Millisecond))
	return img, nil
}

func (s *Service) pull(ctx context.Context, r reference, auth *Auth) (*Image, error) {
	hs, err := s.hosts.Hosts(r.registry)
	if err != nil {
		return nil, fmt.Errorf("registry host config: %w", err)
	}
	rs := &remoteSource{ref: r, hosts: hs, auth: authenticator(auth), s: s}
	top, err := rs.manifest(ctx, r.remote)
	if err != nil {
		return nil, err
	}
	repoDigest := r.digestRef(top.digest)
	m, err := rs.selectImage(ctx, top)
	if err != nil {
		return nil, err
	}
	var tags []string
	if r.tag != "" {
		tags = []string{r.String()}
	}
	digests := []string{repoDigest}
	id := m.Config.Digest.String()

	// Already here (another tag of it, or a repeated pull): only the names change.
	if img, err := s.commit(ctx, &Image{ID: id}, tags, digests); !errors.Is(err, errNotHere) {
		return img, err
	}
	// Concurrent pulls of one image share a single download; each then records its own names.
	img, err := s.pulls.Do(ctx, id, func(fctx context.Context) (*Image, error) {
		src, err := rs.imageSource(fctx, m)
		if err != nil {
			return nil, err
		}
		return s.ingest(fctx, src, tags, digests)
	})
	if err != nil {
		return nil, err
	}
	return s.commit(ctx, img, tags, digests)
}

func authenticator(a *Auth) authn.Authenticator {
	if a == nil || *a == (Auth{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password, Auth: a.Auth,
		IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken})
}

// remoteSource fetches from the endpoints of one registry, in configured order.
type remoteSource struct {
	ref   reference
	hosts []hosts.Host
	auth  authn.Authenticator
	s     *Service

	mu      sync.Mutex
	pullers map[int]*remote.Puller
	clients map[int]*http.Client
}

// puller returns the client for host i; a Puller caches the registry's auth handshake.
func (rs *remoteSource) puller(i int) (*remote.Puller, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if p := rs.pullers[i]; p != nil {
		return p, nil
	}
	p, err := remote.NewPuller(
		remote.WithTransport(rs.hosts[i].RoundTripper(rs.ref.apiHost(), rs.ref.registry)),
		remote.WithAuth(rs.auth),
		remote.WithUserAgent("cri-mini"),
	)
	if err != nil {
		return nil, fmt.Errorf("registry client for %s: %w", rs.hosts[i].URL, err)
	}
	if rs.pullers == nil {
		rs.pullers = map[int]*remote.Puller{}
	}
	rs.pullers[i] = p
	return p, nil
}

// try calls fn with each host that has capability c until one succeeds. Cancellation stops the
// attempts; any other failure moves on to the next host, as containerd does.
func (rs *remoteSource) try(ctx context.Context, c string, fn func(int, *remote.Puller) error) error {
	var errs []error
	for i, h := range rs.hosts {
		if !h.Has(c) {
			continue
		}
		p, err := rs.puller(i)
		if err == nil {
			err = fn(i, p)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		klog.FromContext(ctx).V(2).Info("Registry host failed, trying next", "host", h.URL.String(), "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", h.URL, err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("no registry host with capability %q for %s: %w", c, rs.ref.registry, store.ErrFailedPrecondition)
	}
	if allNotFound(errs) {
		return fmt.Errorf("%w: %w", store.ErrNotFound, errors.Join(errs...))
	}
	return errors.Join(errs...)
}

func allNotFound(errs []error) bool {
	for _, err := range errs {
		var te *transport.Error
		if !errors.As(err, &te) || te.StatusCode != http.StatusNotFound {
			return false
		}
	}
	return true
}

// manifestData is a fetched, digest-checked manifest.
type manifestData struct {
	raw       []byte
	mediaType types.MediaType
	digest    string
}

// manifest resolves ref on the hosts with the resolve capability (pull for digest references:
// those are content-addressed, as containerd treats them) and checks its digest.
func (rs *remoteSource) manifest(ctx context.Context, ref name.Reference) (*manifestData, error) {
	capability := hosts.CapResolve
	if _, byDigest := ref.(name.Digest); byDigest {
		capability = hosts.CapPull
	}
	ctx, cancel := context.WithTimeout(ctx, rs.s.opts.ProgressTimeout)
	defer cancel()
	var m *manifestData
	err := rs.try(ctx, capability, func(_ int, p *remote.Puller) error {
		d, err := p.Get(ctx, ref)
		if err != nil {
			return err
		}
		if len(d.Manifest) > maxManifestSize {
			return fmt.Errorf("manifest of %d bytes is too large", len(d.Manifest))
		}
		m = &manifestData{raw: d.Manifest, mediaType: d.MediaType, digest: fmt.Sprintf("sha256:%x", sha256.Sum256(d.Manifest))}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	if dg, ok := ref.(name.Digest); ok && dg.DigestStr() != m.digest {
		return nil, fmt.Errorf("manifest %s has digest %s: %w", dg.DigestStr(), m.digest, ErrDigestMismatch)
	}
	if m.mediaType == "" {
		m.mediaType = sniffMediaType(m.raw)
	}
	return m, nil
}

func sniffMediaType(raw []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(raw, &probe) == nil {
		if probe.MediaType != "" {
			return probe.MediaType
		}
		if probe.Manifests != nil {
			return types.OCIImageIndex
		}
	}
	return types.OCIManifestSchema1
}

// selectImage follows manifest lists and OCI indexes down to the image manifest of our platform.
func (rs *remoteSource) selectImage(ctx context.Context, m *manifestData) (*v1.Manifest, error) {
	// Bounded: nested indexes are legal but more than a few levels is a loop or an attack.
	for depth := 0; depth < 4; depth++ {
		switch {
		case m.mediaType.IsImage():
			return parseImageManifest(m.raw)
		case m.mediaType.IsIndex():
			idx, err := v1.ParseIndexManifest(bytes.NewReader(m.raw))
			if err != nil {
				return nil, fmt.Errorf("parse index %s: %w", m.digest, err)
			}
			d, err := selectPlatform(idx, rs.s.opts.Platform)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", m.digest, err)
			}
			child := rs.ref.remote.Context().Digest(d.Digest.String())
			if m, err = rs.manifest(ctx, child); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unsupported manifest type %q: %w", m.mediaType, store.ErrInvalidArgument)
		}
	}
	return nil, fmt.Errorf("manifest indexes nested too deep: %w", store.ErrInvalidArgument)
}

func parseImageManifest(raw []byte) (*v1.Manifest, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse image manifest: %w", err)
	}
	if m.Config.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("config digest %q is not sha256: %w", m.Config.Digest, store.ErrInvalidArgument)
	}
	return m, nil
}

// selectPlatform picks our OS and architecture, preferring the exact variant, then a manifest
// without variant, then any variant (amd64 images rarely set one; arm ones do).
func selectPlatform(idx *v1.IndexManifest, want *v1.Platform) (v1.Descriptor, error) {
	best, bestScore := v1.Descriptor{}, 0
	for _, d := range idx.Manifests {
		p := d.Platform
		if p == nil || p.OS != want.OS || p.Architecture != want.Architecture {
			continue
		}
		score := 1
		switch p.Variant {
		case want.Variant:
			score = 3
		case "":
			score = 2
		}
		if score > bestScore {
			best, bestScore = d, score
		}
	}
	if bestScore == 0 {
		return v1.Descriptor{}, fmt.Errorf("no manifest for platform %s: %w", want, store.ErrNotFound)
	}
	return best, nil
}

// blob opens the blob d, trying the hosts with the pull capability. Only failures before any
// content arrives move on to the next host; content errors surface when the stream is read.
// The request is made here rather than through the registry library's layer type, which would
// verify the digest a second time: fetchLayer and imageSource verify every byte themselves.
func (rs *remoteSource) blob(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
	repo := rs.ref.remote.Context()
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	var body io.ReadCloser
	err := rs.try(ctx, hosts.CapPull, func(i int, _ *remote.Puller) error {
		c, err := rs.client(ctx, i)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			resp.Body.Close()
			return err
		}
		body = resp.Body
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s: %w", d, err)
	}
	return body, nil
}

// client returns an HTTP client for host i that authenticates to the repository (token
// handshake done once per host and pull).
func (rs *remoteSource) client(ctx context.Context, i int) (*http.Client, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if c := rs.clients[i]; c != nil {
		return c, nil
	}
	repo := rs.ref.remote.Context()
	t, err := transport.NewWithContext(ctx, repo.Registry, rs.auth,
		rs.hosts[i].RoundTripper(rs.ref.apiHost(), rs.ref.registry), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticate to %s: %w", rs.hosts[i].URL, err)
	}
	if rs.clients == nil {
		rs.clients = map[int]*http.Client{}
	}
	c := &http.Client{Transport: t}
	rs.clients[i] = c
	return c, nil
}

// imageSource fetches and verifies the config of m and describes its layers.
func (rs *remoteSource) imageSource(ctx context.Context, m *v1.Manifest) (*imageSource, error) {
	wctx, touch, stop := rs.s.watch(ctx, "config "+m.Config.Digest.String(), klog.FromContext(ctx))
	defer stop()
	rc, err := rs.blob(wctx, m.Config.Digest)
	if err != nil {
		return nil, rs.s.wrapCause(wctx, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(&hashReader{r: rc, h: sha256.New(), touch: touch}, maxManifestSize))
	if err != nil {
		return nil, rs.s.wrapCause(wctx, fmt.Errorf("read config %s: %w", m.Config.Digest, err))
	}
	src, err := newImageSource(m, raw)
	if err != nil {
		return nil, err
	}
	for i, l := range m.Layers {
		src.layers[i].open = func(ctx context.Context) (io.ReadCloser, error) { return rs.blob(ctx, l.Digest) }
	}
	return src, nil
}

// newImageSource verifies a config against its manifest and describes the manifest's layers
// (without openers).
func newImageSource(m *v1.Manifest, rawConfig []byte) (*imageSource, error) {
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(rawConfig)); got != m.Config.Digest.String() {
		return nil, fmt.Errorf("config %s has digest %s: %w", m.Config.Digest, got, ErrDigestMismatch)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w", m.Config.Digest, err)
	}
	src := &imageSource{id: m.Config.Digest.String(), config: cfg, size: uint64(len(rawConfig)), annotations: m.Annotations}
	for _, l := range m.Layers {
		if l.Digest.Algorithm != "sha256" {
			return nil, fmt.Errorf("layer digest %q is not sha256: %w", l.Digest, store.ErrInvalidArgument)
		}
		src.layers = append(src.layers, layerSource{digest: l.Digest, size: l.Size})
		src.size += uint64(l.Size)
	}
	return src, nil
}
