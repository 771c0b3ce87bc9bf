package cri

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/store"
)

// ImageStatus reports one image. A missing image is not an error: the answer is OK with no
// image, which is how kubelet learns it must pull.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalidArg("image.image", "the image reference is empty")
	}
	imgs, err := s.images()
	if err != nil {
		return nil, err
	}
	img, err := imgs.Get(ref)
	if errors.Is(err, store.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		if resp.Info, err = imageInfo(img); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
