// Package image pulls, verifies, unpacks and indexes container images. Each layer is unpacked
// once into its own directory, named by a short number so that an overlay mount of many layers
// fits in one page of mount data; images and layers are recorded in the metadata database and
// mirrored in memory so that listing and status queries never touch disk or network.
package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/cri-mini/cri-mini/pkg/image/hosts"
	"github.com/cri-mini/cri-mini/pkg/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/klog/v2"
)

// Buckets in the metadata database.
const (
	imagesBucket = "images"
	layersBucket = "layers"
)

// Defaults of Options.
const (
	DefaultMaxConcurrentDownloads = 3
	DefaultProgressTimeout        = time.Minute
	DefaultRegistryConfigDir      = "/etc/cri-mini/certs.d"
)

// Options configures a Service.
type Options struct {
	// Root holds the layer store (Root/l/<n>) and temporary unpack dirs (Root/tmp).
	Root string
	// WritableRoot is the directory of the containers' writable layers, reported by FsInfo.
	WritableRoot string
	// RegistryConfigDir holds <host>/hosts.toml files (containerd layout); "" disables them.
	RegistryConfigDir string
	// MaxConcurrentDownloads bounds the parallel layer downloads of one pull (default 3).
	MaxConcurrentDownloads int
	// ProgressTimeout fails a blob download that receives nothing for this long (default 1m).
	ProgressTimeout time.Duration
	DB              *store.DB
	// InUse reports whether a container uses the image; such an image cannot be removed. It is
	// called while Remove holds the service's write lock, so it must not call methods of the
	// Service that modify it (queries such as Get still answer).
	InUse func(imageID string) bool
	// Platform selects the manifest of a multi-platform image (default linux/GOARCH).
	Platform *v1.Platform
	// Pinned lists references of images reported as pinned (never garbage collected by kubelet).
	Pinned []string
}

// Auth is registry credentials for one pull.
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 of "username:password"
	IdentityToken string
	RegistryToken string
}

// Image is an image in the store. Values returned by the Service are shared and must be treated
// as read-only.
type Image struct {
	ID          string // config digest, "sha256:..."
	RepoTags    []string
	RepoDigests []string
	Size        uint64
	User        string
	Config      v1.Config
	Layers      []string // chain IDs, bottom layer first
	// The rest of the image config and the manifest's annotations, kept so that a verbose
	// ImageStatus can report the image spec without reading the config blob again. Records
	// written before these fields existed leave them empty.
	Created      time.Time         `json:",omitempty"`
	OS           string            `json:",omitempty"`
	Architecture string            `json:",omitempty"`
	Variant      string            `json:",omitempty"`
	DiffIDs      []string          `json:",omitempty"`
	Annotations  map[string]string `json:",omitempty"`
	Pinned       bool              `json:"-"`
}

// layer is the record of one unpacked layer.
type layer struct {
	ChainID string
	DiffID  string
	Digest  string // compressed digest when known
	Short   string // directory name below Root/l
	Bytes   int64
	Inodes  int64
	Refs    int // images using the layer
}

// FsUsage is the usage of one filesystem area.
type FsUsage struct {
	Path       string // the directory measured
	Mountpoint string // mountpoint of the filesystem holding it
	UsedBytes  uint64
	Inodes     uint64
}

// Service is the image store.
type Service struct {
	opts      Options
	layersDir string
	tmpDir    string
	db        *store.DB
	hosts     *hosts.Resolver
	pinned    map[string]bool

	pulls  *flightGroup[*Image]
	unpack *flightGroup[*layer]

	// writeMu serialises every mutation of the store (hold, release, addLayer, commit, Remove)
	// including its database transaction and renames, and guards holds and nextShort. A
	// goroutine holding writeMu may read the index below without mu, since nobody else changes
	// it meanwhile.
	writeMu   sync.Mutex
	holds     map[string]int // chain ID -> in-flight pulls that need the layer
	users     map[string]int // image ID -> in-flight users (Use) that Remove must respect
	nextShort int

	// mu guards the in-memory index. It is held only to read it or to swap in a state already
	// written to disk, never across disk I/O, so that Get, List, LowerDirs and FsInfo answer
	// from memory while a pull or removal waits for the database to sync.
	mu     sync.Mutex
	images map[string]*Image // by ID
	refs   map[string]string // repo tag or repo digest -> ID
	layers map[string]*layer // by chain ID
	sorted []*Image          // the images sorted by ID, built by List; nil when the index changed

	normMu sync.Mutex
	norm   map[string]string // reference as asked -> normalised form ("" when invalid)
}

// maxNormalised bounds the remembered normalisations; a node asks about a few dozen names, and
// a client sending endless distinct names only makes the map start over.
const maxNormalised = 1024

// maxNormalisedLen is the longest reference whose normalisation is kept: a repository name
// (at most 255 bytes), a tag (128) and a sha256 digest (71) fit; anything longer is no
// valid reference, and keeping it would let a client make the cache hold megabytes.
const maxNormalisedLen = 512

// New opens the image store, removing what an interrupted pull or removal left behind.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Root == "" || o.DB == nil {
		return nil, fmt.Errorf("image service needs a root dir and a database: %w", store.ErrInvalidArgument)
	}
	if o.MaxConcurrentDownloads <= 0 {
		o.MaxConcurrentDownloads = DefaultMaxConcurrentDownloads
	}
	if o.ProgressTimeout <= 0 {
		o.ProgressTimeout = DefaultProgressTimeout
	}
	if o.Platform == nil {
		o.Platform = defaultPlatform()
	}
	if o.InUse == nil {
		o.InUse = func(string) bool { return false }
	}
	s := &Service{
		opts:      o,
		layersDir: filepath.Join(o.Root, "l"),
		tmpDir:    filepath.Join(o.Root, "tmp"),
		db:        o.DB,
		hosts:     hosts.NewResolver(o.RegistryConfigDir),
		pinned:    map[string]bool{},
		pulls:     newFlightGroup[*Image](),
		unpack:    newFlightGroup[*layer](),
		images:    map[string]*Image{},
		refs:      map[string]string{},
		norm:      map[string]string{},
		layers:    map[string]*layer{},
		holds:     map[string]int{},
		nextShort: 1,
	}
	for _, p := range o.Pinned {
		r, err := parseReference(p)
		if err != nil {
			return nil, fmt.Errorf("pinned image %q: %w", p, err)
		}
		s.pinned[r.String()] = true
	}
	// Temporary unpack dirs are never valid after a restart: whatever was in them was not
	// recorded.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return nil, fmt.Errorf("remove leftover temp dir %s: %w", s.tmpDir, err)
	}
	for _, d := range []string{s.layersDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create image dir %s: %w", d, err)
		}
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close releases idle registry connections.
func (s *Service) Close() { s.hosts.Close() }

func defaultPlatform() *v1.Platform {
	p := &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// load rebuilds the in-memory index from the database and repairs it: images whose layers are
// gone are dropped, reference counts are recomputed from the images, and unreferenced layers
// (from a pull killed before its image was recorded) and unrecorded dirs are removed.
func (s *Service) load(ctx context.Context) error {
	log := klog.FromContext(ctx)
	var images map[string]*Image
	var layers map[string]*layer
	err := s.db.View(func(tx *store.Tx) (err error) {
		layers, err = store.LoadAll(tx, layersBucket,
			func(_ string, l *layer) bool { return l.Short != "" },
			func(id string, err error) { log.Error(err, "Dropping corrupt layer record", "layer", id) })
		if err != nil {
			return err
		}
		images, err = store.LoadAll(tx, imagesBucket,
			func(id string, img *Image) bool { return img.ID == id },
			func(id string, err error) { log.Error(err, "Dropping corrupt image record", "image", id) })
		return err
	})
	if err != nil {
		return fmt.Errorf("load image metadata: %w", err)
	}
	for id, l := range layers {
		if fi, err := os.Lstat(filepath.Join(s.layersDir, l.Short)); err != nil || !fi.IsDir() {
			log.Info("Layer directory missing, dropping layer", "layer", id, "dir", l.Short)
			delete(layers, id)
		}
	}
	refs := map[string]int{}
	for id, img := range images {
		complete := true
		for _, c := range img.Layers {
			if layers[c] == nil {
				complete = false
			}
		}
		if !complete {
			log.Info("Image has missing layers, dropping it", "image", id)
			delete(images, id)
			continue
		}
		for _, c := range img.Layers {
			refs[c]++
		}
	}
	// bbolt forbids changing a bucket from inside its ForEach (the cursor skips the key after
	// a deleted one), so the changes are collected first and applied after each iteration.
	err = s.db.Update(func(tx *store.Tx) error {
		var dropImages []string
		if err := tx.ForEach(imagesBucket, func(id string, _ []byte) error {
			if images[id] == nil {
				dropImages = append(dropImages, id)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, id := range dropImages {
			if err := tx.Delete(imagesBucket, id); err != nil {
				return err
			}
		}
		var dropLayers []string
		rewrite := map[string]*layer{}
		if err := tx.ForEach(layersBucket, func(id string, _ []byte) error {
			l := layers[id]
			switch {
			case l == nil || refs[id] == 0:
				dropLayers = append(dropLayers, id)
			case l.Refs != refs[id]:
				l.Refs = refs[id]
				rewrite[id] = l
			}
			return nil
		}); err != nil {
			return err
		}
		for _, id := range dropLayers {
			delete(layers, id)
			if err := tx.Delete(layersBucket, id); err != nil {
				return err
			}
		}
		for id, l := range rewrite {
			if err := tx.Put(layersBucket, id, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("repair image metadata: %w", err)
	}
	keep := map[string]bool{}
	for _, l := range layers {
		keep[l.Short] = true
		if n, err := strconv.Atoi(l.Short); err == nil && n >= s.nextShort {
			s.nextShort = n + 1
		}
	}
	entries, err := os.ReadDir(s.layersDir)
	if err != nil {
		return fmt.Errorf("read layer dir: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			log.V(2).Info("Removing unreferenced layer directory", "dir", e.Name())
			if err := os.RemoveAll(filepath.Join(s.layersDir, e.Name())); err != nil {
				return fmt.Errorf("remove unreferenced layer dir %s: %w", e.Name(), err)
			}
		}
	}
	s.layers = layers
	for _, img := range images {
		s.publish(img)
	}
	return nil
}

// publish puts img into the in-memory index. Callers hold s.mu (or own s exclusively).
func (s *Service) publish(img *Image) {
	img.Pinned = s.pinned[img.ID]
	for _, r := range img.RepoTags {
		s.refs[r] = img.ID
		img.Pinned = img.Pinned || s.pinned[r]
	}
	for _, r := range img.RepoDigests {
		s.refs[r] = img.ID
		img.Pinned = img.Pinned || s.pinned[r]
	}
	s.images[img.ID] = img
	s.sorted = nil
}

// unpublish removes img from the in-memory index. Callers hold s.mu.
func (s *Service) unpublish(img *Image) {
	for _, r := range append(append([]string(nil), img.RepoTags...), img.RepoDigests...) {
		if s.refs[r] == img.ID {
			delete(s.refs, r)
		}
	}
	delete(s.images, img.ID)
	s.sorted = nil
}

// errNotFound builds the wrapped not-found error of a query.
func errNotFound(ref string) error {
	return fmt.Errorf("image %q: %w", ref, store.ErrNotFound)
}
