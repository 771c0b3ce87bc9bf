package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// RemoveImage removes the image with all its names. An image that is already gone is not an
// error (kubelet retries removals); one used by a container fails with FailedPrecondition.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalidArg("image.image", "the image reference is empty")
	}
	imgs, err := s.images()
	if err != nil {
		return nil, err
	}
	if err := imgs.Remove(ctx, ref); err != nil {
		return nil, err
	}
	klog.FromContext(ctx).V(2).Info("Image removed", "image", ref)
	return &runtimeapi.RemoveImageResponse{}, nil
}
