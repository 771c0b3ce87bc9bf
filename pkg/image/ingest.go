package image

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cri-mini/cri-mini/pkg/image/unpack"
	"github.com/cri-mini/cri-mini/pkg/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/klog/v2"
)

// errNotHere tells a names-only commit (an Image with just an ID) that the image is not stored.
var errNotHere = errors.New("image not in store")

// ErrDigestMismatch marks content that does not match the digest that names it.
var ErrDigestMismatch = errors.New("digest mismatch")

// layerSource is one layer to fetch: the digest and size of its blob (zero/-1 when the source
// does not know them, as in a docker save archive), its diffID, and how to open the blob.
type layerSource struct {
	digest v1.Hash
	size   int64
	diffID v1.Hash
	open   func(ctx context.Context) (io.ReadCloser, error)
}

// imageSource is a verified config plus its layers, whatever they come from.
type imageSource struct {
	id     string // config digest
	config *v1.ConfigFile
	layers []layerSource
	size   uint64
	// annotations of the image manifest, when the source has one.
	annotations map[string]string
}

// chainIDs computes the chain ID of every layer: the ID of a layer together with all below it
// (image-spec: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))).
func chainIDs(diffIDs []v1.Hash) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d.String()
			continue
		}
		out[i] = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(out[i-1]+" "+d.String())))
	}
	return out
}

// ingest makes sure every layer of src is in the store, then records the image with tags and
// digests. It is used by pull and import alike.
func (s *Service) ingest(ctx context.Context, src *imageSource, tags, digests []string) (*Image, error) {
	diffIDs := src.config.RootFS.DiffIDs
	if len(diffIDs) != len(src.layers) {
		return nil, fmt.Errorf("image %s: config lists %d layers, manifest %d: %w", src.id, len(diffIDs), len(src.layers), store.ErrInvalidArgument)
	}
	chains := chainIDs(diffIDs)
	s.hold(chains)
	defer s.release(ctx, chains)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, s.opts.MaxConcurrentDownloads)
	var wg sync.WaitGroup
	errs := make([]error, len(chains))
	for i, c := range chains {
		if s.hasLayer(c) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = context.Cause(ctx)
				return
			}
			defer func() { <-sem }()
			ls := src.layers[i]
			ls.diffID = diffIDs[i]
			if _, err := s.unpack.Do(ctx, c, func(fctx context.Context) (*layer, error) {
				return s.fetchLayer(fctx, src.id, c, ls)
			}); err != nil {
				errs[i] = err
				// One broken layer fails the image: stop the other downloads now.
				cancel(err)
			}
		}()
	}
	wg.Wait()
	// Report the first real failure, not the cancellations it caused.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cfg := src.config.Config
	img := &Image{
		ID: src.id, Size: src.size, User: cfg.User, Config: cfg, Layers: chains,
		Created: src.config.Created.Time, OS: src.config.OS, Architecture: src.config.Architecture,
		Variant: src.config.Variant, Annotations: src.annotations,
	}
	for _, d := range diffIDs {
		img.DiffIDs = append(img.DiffIDs, d.String())
	}
	return s.commit(ctx, img, tags, digests)
}

func (s *Service) hasLayer(chainID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.layers[chainID] != nil
}

// hold marks layers as needed by an in-flight pull so that no removal or failed pull deletes them
// before the image that uses them is recorded.
func (s *Service) hold(chains []string) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for _, c := range chains {
		s.holds[c]++
	}
}

// release drops the holds of a pull and removes the layers nobody references any more (the pull
// failed, so nothing of it is kept).
func (s *Service) release(ctx context.Context, chains []string) {
	s.writeMu.Lock()
	var drop []*layer
	for _, c := range chains {
		s.holds[c]--
		if s.holds[c] <= 0 {
			delete(s.holds, c)
			if l := s.layers[c]; l != nil && l.Refs == 0 && !slices.Contains(drop, l) {
				drop = append(drop, l)
			}
		}
	}
	if len(drop) > 0 {
		err := s.db.Update(func(tx *store.Tx) error {
			for _, l := range drop {
				if err := tx.Delete(layersBucket, l.ChainID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// The records stay; New removes unreferenced layers at the next start.
			klog.FromContext(ctx).Error(err, "Failed to drop unreferenced layers")
			drop = nil
		}
		s.mu.Lock()
		for _, l := range drop {
			delete(s.layers, l.ChainID)
		}
		s.mu.Unlock()
	}
	s.writeMu.Unlock()
	s.removeDirs(ctx, drop)
}

// removeDirs deletes layer dirs whose records are gone. Each is first renamed into the temp dir
// so that a crash mid-removal never leaves a half-deleted dir under a live short name.
func (s *Service) removeDirs(ctx context.Context, ls []*layer) {
	for _, l := range ls {
		src := filepath.Join(s.layersDir, l.Short)
		dst, err := os.MkdirTemp(s.tmpDir, "rm-")
		if err == nil {
			dst = filepath.Join(dst, "l")
			if err = os.Rename(src, dst); err == nil {
				err = os.RemoveAll(filepath.Dir(dst))
			}
		}
		if err != nil {
			klog.FromContext(ctx).Error(err, "Failed to remove layer directory", "layer", l.ChainID, "dir", src)
		}
	}
}

// hashReader hashes what is read through it and notes progress.
type hashReader struct {
	r     io.Reader
	h     hash.Hash
	n     int64
	touch func(int)
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.h.Write(p[:n])
		h.n += int64(n)
		if h.touch != nil {
			h.touch(n)
		}
	}
	return n, err
}

func (h *hashReader) digest() string { return fmt.Sprintf("sha256:%x", h.h.Sum(nil)) }

// boundedReader fails a blob that is longer than its descriptor says, as soon as the first
// byte beyond it arrives.
type boundedReader struct {
	r    io.Reader
	max  int64
	n    int64
	what string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n > b.max {
		return 0, b.tooLong()
	}
	// Ask for at most one byte past the limit: enough to notice an overlong blob.
	if rest := b.max - b.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		return n - int(b.n-b.max), b.tooLong()
	}
	return n, err
}

func (b *boundedReader) tooLong() error {
	return fmt.Errorf("blob %s is longer than the %d bytes its descriptor says: %w", b.what, b.max, ErrDigestMismatch)
}

// fetchLayer downloads, verifies and unpacks one layer into a temp dir and moves it into the
// store. The blob is unpacked while it streams in; its digest and diffID are only known at the
// end, so the temp dir is discarded unless both match.
func (s *Service) fetchLayer(ctx context.Context, imageID, chainID string, ls layerSource) (l *layer, err error) {
	log := klog.FromContext(ctx).WithValues("image", imageID, "layer", ls.digest.String(), "diffID", ls.diffID.String())
	if s.hasLayer(chainID) {
		return nil, nil
	}
	start := time.Now()
	log.V(2).Info("Pulling layer", "size", ls.size)
	ctx, touch, stop := s.watch(ctx, "layer "+ls.digest.String(), log)
	defer stop()

	tmp, err := os.MkdirTemp(s.tmpDir, "layer-")
	if err != nil {
		return nil, fmt.Errorf("create temp layer dir: %w", err)
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	rc, err := ls.open(ctx)
	if err != nil {
		return nil, s.wrapCause(ctx, fmt.Errorf("fetch layer %s: %w", ls.digest, err))
	}
	defer rc.Close()
	var blob io.Reader = rc
	if ls.size >= 0 {
		// The manifest names the size: reading past it means the blob cannot match its digest,
		// and an endless stream would otherwise be unpacked until the disk is full (bytes keep
		// flowing, so no progress timeout fires). Fail at the first byte too many.
		blob = &boundedReader{r: rc, max: ls.size, what: ls.digest.String()}
	}
	compressed := &hashReader{r: blob, h: sha256.New(), touch: touch}
	zr, err := unpack.Decompress(compressed)
	if err != nil {
		return nil, s.wrapCause(ctx, fmt.Errorf("layer %s: %w", ls.digest, err))
	}
	defer zr.Close()
	plain := &hashReader{r: zr, h: sha256.New()}
	stats, err := unpack.Apply(ctx, plain, tmp, unpack.Options{Chown: os.Geteuid() == 0})
	if err == nil {
		// Tar padding after the end marker and compressor trailers are part of the digests.
		if _, err = io.Copy(io.Discard, plain); err == nil {
			_, err = io.Copy(io.Discard, compressed)
		}
	}
	if err != nil {
		err = fmt.Errorf("unpack layer %s: %w", ls.digest, err)
		// Corrupt content usually shows first as a broken gzip or tar stream; when the blob
		// does not match its digest either, say so: that is the cause.
		if ctx.Err() == nil && ls.digest.Hex != "" {
			if _, cerr := io.Copy(io.Discard, compressed); cerr == nil && compressed.digest() != ls.digest.String() {
				err = fmt.Errorf("layer %s: content digest is %s: %w (%w)", ls.digest, compressed.digest(), ErrDigestMismatch, err)
			}
		}
		return nil, s.wrapCause(ctx, err)
	}
	if ls.size >= 0 && compressed.n != ls.size && ls.digest.Hex != "" {
		return nil, fmt.Errorf("layer %s: size %d, manifest says %d: %w", ls.digest, compressed.n, ls.size, ErrDigestMismatch)
	}
	if ls.digest.Hex != "" && compressed.digest() != ls.digest.String() {
		return nil, fmt.Errorf("layer %s: content digest is %s: %w", ls.digest, compressed.digest(), ErrDigestMismatch)
	}
	if plain.digest() != ls.diffID.String() {
		return nil, fmt.Errorf("layer %s: uncompressed digest is %s, config says diffID %s: %w", ls.digest, plain.digest(), ls.diffID, ErrDigestMismatch)
	}
	l, err = s.addLayer(ctx, tmp, &layer{ChainID: chainID, DiffID: ls.diffID.String(), Digest: ls.digest.String(),
		Bytes: stats.Bytes, Inodes: stats.Inodes})
	if err != nil {
		return nil, err
	}
	tmp = ""
	log.V(2).Info("Layer pulled", "bytes", compressed.n, "unpackedBytes", stats.Bytes, "duration", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// addLayer renames an unpacked temp dir into place and records it. The dir is renamed first: a
// crash before the record leaves an unrecorded dir, which New removes. When the layer is stored
// already, tmp is removed and the stored layer returned: a pull that gave up can leave its unpack
// running while a retry unpacks the same layer again, and recording both would orphan one dir.
func (s *Service) addLayer(ctx context.Context, tmp string, l *layer) (*layer, error) {
	have, err := s.placeLayer(ctx, tmp, l)
	if err != nil {
		return nil, err
	}
	if have != nil {
		// Outside the lock: removing a large tree takes a while.
		if err := os.RemoveAll(tmp); err != nil {
			klog.FromContext(ctx).Error(err, "Failed to remove duplicate layer", "layer", l.ChainID, "dir", tmp)
		}
		return have, nil
	}
	return l, nil
}

// placeLayer does the locked part of addLayer; it returns the stored layer when there is one
// (and then leaves tmp alone).
func (s *Service) placeLayer(ctx context.Context, tmp string, l *layer) (*layer, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.holds[l.ChainID] == 0 {
		// Every pull that wanted it gave up while it was unpacking.
		return nil, fmt.Errorf("layer %s: %w", l.ChainID, context.Canceled)
	}
	if have := s.layers[l.ChainID]; have != nil {
		return have, nil
	}
	l.Short = strconv.Itoa(s.nextShort)
	s.nextShort++
	dst := filepath.Join(s.layersDir, l.Short)
	if err := os.Rename(tmp, dst); err != nil {
		return nil, fmt.Errorf("move layer %s into place: %w", l.ChainID, err)
	}
	if err := s.db.Update(func(tx *store.Tx) error { return tx.Put(layersBucket, l.ChainID, l) }); err != nil {
		if rerr := os.RemoveAll(dst); rerr != nil {
			klog.FromContext(ctx).Error(rerr, "Failed to remove unrecorded layer", "dir", dst)
		}
		return nil, fmt.Errorf("record layer %s: %w", l.ChainID, err)
	}
	s.mu.Lock()
	s.layers[l.ChainID] = l
	s.mu.Unlock()
	return nil, nil
}

// commit records img (or adds tags and digests to it when it exists) in one transaction, moving
// tags that pointed to another image. An image that loses its last tag is kept with its repo
// digests and ID, as containerd keeps the image record named by its ID: kubelet's image garbage
// collection, or an explicit removal, decides when it goes.
func (s *Service) commit(ctx context.Context, img *Image, tags, digests []string) (*Image, error) {
	// The index is read under writeMu alone (nobody else changes it) and only the final swap
	// takes mu, so queries do not wait for the transaction to sync.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	old := s.images[img.ID]
	next := img
	if old == nil && len(img.Layers) == 0 {
		return nil, errNotHere
	}
	if old != nil {
		cp := *old
		next = &cp
	} else {
		for _, c := range img.Layers {
			if s.layers[c] == nil {
				return nil, fmt.Errorf("image %s: layer %s vanished: %w", img.ID, c, store.ErrNotFound)
			}
		}
	}
	next.RepoTags = mergeRefs(next.RepoTags, tags)
	next.RepoDigests = mergeRefs(next.RepoDigests, digests)
	// Images that lose a reference to this one, copied so readers keep a consistent view.
	losers := map[string]*Image{}
	for _, r := range append(append([]string(nil), tags...), digests...) {
		if id, ok := s.refs[r]; ok && id != img.ID {
			l := losers[id]
			if l == nil {
				cp := *s.images[id]
				l = &cp
				losers[id] = l
			}
			l.RepoTags = removeRef(l.RepoTags, r)
			l.RepoDigests = removeRef(l.RepoDigests, r)
		}
	}
	// A repeated pull that changes no name would rewrite the same record: skip the transaction,
	// whose two fdatasyncs are most of a cached pull's time.
	if old != nil && len(losers) == 0 && slices.Equal(next.RepoTags, old.RepoTags) &&
		slices.Equal(next.RepoDigests, old.RepoDigests) {
		return old, nil
	}
	err := s.db.Update(func(tx *store.Tx) error {
		if err := tx.Put(imagesBucket, next.ID, next); err != nil {
			return err
		}
		for _, l := range losers {
			if err := tx.Put(imagesBucket, l.ID, l); err != nil {
				return err
			}
		}
		if old != nil {
			return nil
		}
		for _, c := range next.Layers {
			cp := *s.layers[c]
			cp.Refs++
			if err := tx.Put(layersBucket, c, &cp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record image %s: %w", img.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old == nil {
		for _, c := range next.Layers {
			s.layers[c].Refs++
		}
	} else {
		s.unpublish(old)
	}
	for id, l := range losers {
		s.unpublish(s.images[id])
		s.publish(l)
	}
	s.publish(next)
	klog.FromContext(ctx).V(2).Info("Image recorded", "image", next.ID, "tags", next.RepoTags)
	return next, nil
}

func mergeRefs(have, add []string) []string {
	out := append([]string(nil), have...)
	for _, r := range add {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func removeRef(have []string, r string) []string {
	return slices.DeleteFunc(append([]string(nil), have...), func(x string) bool { return x == r })
}

// watch derives a context that is cancelled when touch is not called for ProgressTimeout. It
// also logs download progress periodically at V(2).
func (s *Service) watch(ctx context.Context, what string, log klog.Logger) (context.Context, func(int), func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	timeout := s.opts.ProgressTimeout
	var last, total atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	tick := min(timeout/4, time.Second)
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		lastLog := time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, last.Load())) > timeout {
					cancel(fmt.Errorf("%s: no progress for %s: %w", what, timeout, context.DeadlineExceeded))
					return
				}
				if now.Sub(lastLog) >= 10*time.Second {
					lastLog = now
					log.V(2).Info("Download progress", "bytes", total.Load())
				}
			}
		}
	}()
	touch := func(n int) {
		last.Store(time.Now().UnixNano())
		total.Add(int64(n))
	}
	stop := func() {
		close(done)
		cancel(nil)
	}
	return ctx, touch, stop
}

// wrapCause adds the reason ctx ended (deadline, no progress, cancellation) to err, so callers
// can tell a timeout from a broken registry with errors.Is.
func (s *Service) wrapCause(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(err, cause) {
		return err
	}
	if strings.Contains(err.Error(), cause.Error()) {
		return fmt.Errorf("%w (%w)", cause, err)
	}
	return fmt.Errorf("%w: %w", cause, err)
}
