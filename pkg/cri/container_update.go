package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/container"
)

// UpdateContainerResources applies new limits to a container's cgroup (kubelet's in-place
// resize) and records them; ContainerStatus then reports them. The windows field is ignored
// on Linux, as in containerd. An unknown container is NotFound.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	res, _, err := linuxResources(req.GetLinux(), "linux")
	if err != nil {
		return nil, err
	}
	if err := m.UpdateResources(ctx, id, res); err != nil {
		return nil, fmt.Errorf("update resources of container %s: %w", id, err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// containerResources reports the container's current limits: the recorded cgroup settings
// and the oom_score_adj its process was given.
func containerResources(c *container.Container) *runtimeapi.ContainerResources {
	var adj *int
	if c.Spec != nil && c.Spec.Process != nil {
		adj = c.Spec.Process.OOMScoreAdj
	}
	return toLinuxResources(c.Config.Resources, adj)
}

// ContainerResourceManager is the part of ContainerManager for limits and usage.
type ContainerResourceManager interface {
	UpdateResources(ctx context.Context, idOrPrefix string, r *cgroups.Resources) error
	// Stats and PodStats read cgroup files and the layer cache, never wait on a walk.
	Stats(idOrPrefix string) (*container.Container, *container.Stats, error)
	PodStats(podID string) (*container.Stats, []container.InterfaceStats, error)
}
