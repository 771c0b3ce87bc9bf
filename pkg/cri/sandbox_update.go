package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources applies kubelet's new pod-level resources (after an in-place
// resize) to the pod cgroup. Without resources there is nothing to apply, but the sandbox
// must still exist.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	id := req.GetPodSandboxId()
	if id == "" {
		return nil, invalidArg("pod_sandbox_id", "must not be empty")
	}
	res, err := podResources(req.GetResources(), req.GetOverhead())
	if err != nil {
		return nil, invalidArg("resources", "%v", err)
	}
	if res == nil {
		if _, err := m.Get(id); err != nil {
			return nil, fmt.Errorf("update pod sandbox resources: %w", err)
		}
		return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
	}
	if err := m.UpdateResources(ctx, id, res); err != nil {
		return nil, fmt.Errorf("update pod sandbox resources: %w", err)
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
