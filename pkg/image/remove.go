package image

import (
	"context"
	"errors"
	"fmt"

	"github.com/cri-mini/cri-mini/pkg/store"
	"k8s.io/klog/v2"
)

// Remove deletes the image that ref names (ID, prefix, tag or digest) with all its names, as
// CRI RemoveImage does. An unknown image is not an error; an ID prefix matching several images
// is one wrapping store.ErrInvalidArgument, and an image used by a container is refused with an
// error wrapping store.ErrFailedPrecondition.
func (s *Service) Remove(ctx context.Context, ref string) error {
	// Under writeMu the index can be read without mu; mu is taken only to swap in the new state
	// once the database has it, so queries never wait for the transaction.
	s.writeMu.Lock()
	img, err := s.lookup(ref)
	if errors.Is(err, store.ErrNotFound) {
		s.writeMu.Unlock()
		return nil
	}
	if err != nil {
		s.writeMu.Unlock()
		return err
	}
	if s.users[img.ID] > 0 || s.opts.InUse(img.ID) {
		s.writeMu.Unlock()
		return fmt.Errorf("image %s is used by a container: %w", img.ID, store.ErrFailedPrecondition)
	}
	var drop []*layer
	updated := map[string]*layer{}
	for _, c := range img.Layers {
		l := updated[c]
		if l == nil {
			cp := *s.layers[c]
			l = &cp
			updated[c] = l
		}
		l.Refs--
	}
	err = s.db.Update(func(tx *store.Tx) error {
		if err := tx.Delete(imagesBucket, img.ID); err != nil {
			return err
		}
		for c, l := range updated {
			if l.Refs <= 0 && s.holds[c] == 0 {
				drop = append(drop, l)
				if err := tx.Delete(layersBucket, c); err != nil {
					return err
				}
				continue
			}
			if err := tx.Put(layersBucket, c, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.writeMu.Unlock()
		return fmt.Errorf("remove image %s: %w", img.ID, err)
	}
	s.mu.Lock()
	for c, l := range updated {
		s.layers[c] = l
	}
	for _, l := range drop {
		delete(s.layers, l.ChainID)
	}
	s.unpublish(img)
	s.mu.Unlock()
	s.writeMu.Unlock()
	// Directories go after the records: a crash in between leaves unrecorded dirs, which New
	// removes.
	s.removeDirs(ctx, drop)
	klog.FromContext(ctx).V(2).Info("Image removed", "image", img.ID)
	return nil
}
