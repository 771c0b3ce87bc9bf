package cri

import (
	"context"
	"errors"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/store"
)

// RunPodSandbox creates and starts a pod sandbox: its namespaces, cgroup, resolver files
// and network. A retry with the same metadata while the first sandbox exists answers
// AlreadyExists naming it (kubelet then uses or removes it).
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	if err := checkRuntimeHandler(req.GetRuntimeHandler()); err != nil {
		return nil, err
	}
	c, err := sandboxConfig(req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	if err := s.checkPodUserns(&c); err != nil {
		return nil, err
	}
	sb, err := m.Run(ctx, c)
	if err != nil {
		if errors.Is(err, store.ErrInvalidArgument) {
			// The manager names fields relative to the PodSandboxConfig ("metadata.name",
			// "linux.sysctls"); the request field is config.<that>.
			return nil, fmt.Errorf("config.%w", err)
		}
		return nil, fmt.Errorf("run pod sandbox %s/%s: %w", c.Namespace, c.Name, err)
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}
