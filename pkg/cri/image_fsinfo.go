package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/image"
)

// ImageFsInfo reports the usage of the image layer store and, separately, of the containers'
// writable layers, so that kubelet's eviction manager can tell image and container usage apart.
func (s *Server) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	imgs, err := s.images()
	if err != nil {
		return nil, err
	}
	images, writable, err := imgs.FsInfo()
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	resp := &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{toFsUsage(images, now)}}
	if writable.Path != "" {
		resp.ContainerFilesystems = []*runtimeapi.FilesystemUsage{toFsUsage(writable, now)}
	}
	return resp, nil
}

func toFsUsage(u image.FsUsage, now int64) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  now,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.Inodes},
	}
}
