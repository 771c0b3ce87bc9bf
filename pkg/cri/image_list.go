package cri

import (
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"context"
)

// streamImagesBatch is how many images one StreamImages message carries: far below gRPC's
// default 4 MiB message limit even for images with many tags, while keeping messages few.
const streamImagesBatch = 100

// ListImages lists the images; a filter names one image by ID, tag or digest (normalised like
// a pull: "busybox" matches "docker.io/library/busybox:latest").
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.images()
	if err != nil {
		return nil, err
	}
	found := imgs.List(req.GetFilter().GetImage().GetImage())
	out := make([]*runtimeapi.Image, 0, len(found))
	for _, img := range found {
		out = append(out, toCRIImage(img))
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

// StreamImages is the server-streaming twin of ListImages: the same images, sent in batches so
// that a node with very many images never exceeds the message size limit.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := s.images()
	if err != nil {
		return err
	}
	found := imgs.List(req.GetFilter().GetImage().GetImage())
	for start := 0; start < len(found); start += streamImagesBatch {
		end := min(start+streamImagesBatch, len(found))
		batch := make([]*runtimeapi.Image, 0, end-start)
		for _, img := range found[start:end] {
			batch = append(batch, toCRIImage(img))
		}
		if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: batch}); err != nil {
			return err
		}
	}
	return nil
}
