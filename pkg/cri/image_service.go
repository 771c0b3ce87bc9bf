package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-mini/cri-mini/pkg/image"
)

// ImageService is what the ImageService RPCs need of the image store; *image.Service
// implements it. Errors wrap the pkg/store sentinels, which the interceptor maps to codes.
type ImageService interface {
	Pull(ctx context.Context, ref string, auth *image.Auth) (*image.Image, error)
	Get(ref string) (*image.Image, error)
	List(filterRef string) []*image.Image
	Remove(ctx context.Context, ref string) error
	FsInfo() (images, writable image.FsUsage, err error)
}

var _ ImageService = (*image.Service)(nil)

// images returns the image store, or an Unavailable error when the daemon was wired without one.
func (s *Server) images() (ImageService, error) {
	if s.opts.Images == nil {
		return nil, status.Error(codes.Unavailable, "the daemon runs without an image service")
	}
	return s.opts.Images, nil
}
