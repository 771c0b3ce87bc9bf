package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopPodSandbox stops the sandbox's containers and tears its network down. The CRI wants it
// idempotent: stopping a stopped or unknown sandbox succeeds.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	id := req.GetPodSandboxId()
	if id == "" {
		return nil, invalidArg("pod_sandbox_id", "must not be empty")
	}
	if err := alreadyGone(m.Stop(ctx, id), "stop pod sandbox "+id); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes the sandbox and its containers, stopping it first when it is
// still ready. Removing an unknown sandbox succeeds (idempotent, as the CRI requires).
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	id := req.GetPodSandboxId()
	if id == "" {
		return nil, invalidArg("pod_sandbox_id", "must not be empty")
	}
	if err := alreadyGone(m.Remove(ctx, id), "remove pod sandbox "+id); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}
