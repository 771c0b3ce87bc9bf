package cri

import (
	"context"
	"errors"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/store"
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
	if err := m.Stop(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return &runtimeapi.StopPodSandboxResponse{}, nil
		}
		return nil, fmt.Errorf("stop pod sandbox %s: %w", id, err)
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
	if err := m.Remove(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return &runtimeapi.RemovePodSandboxResponse{}, nil
		}
		return nil, fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}
