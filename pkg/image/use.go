package image

import "sync"

// Use resolves ref like Get and keeps the image from being removed until release is called.
// It is for a user that is not visible to Options.InUse yet, such as a container being
// created: without it, Remove could run between the create's Get and its rootfs mount and
// delete the layers under it. The resolution and the mark happen under the lock Remove
// holds from its lookup to the unpublishing of the image, so Remove either sees the mark or
// has already made the image unresolvable. release may be called more than once.
func (s *Service) Use(ref string) (_ *Image, release func(), _ error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	img, err := s.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	if s.users == nil {
		s.users = map[string]int{}
	}
	s.users[img.ID]++
	return img, sync.OnceFunc(func() {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		if s.users[img.ID]--; s.users[img.ID] <= 0 {
			delete(s.users, img.ID)
		}
	}), nil
}
