package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// CreateContainer creates a container in a ready pod sandbox.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	pods, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	podID := req.GetPodSandboxId()
	if podID == "" {
		return nil, invalidArg("pod_sandbox_id", "must not be empty")
	}
	sb, err := pods.Get(podID)
	if err != nil {
		return nil, fmt.Errorf("pod_sandbox_id %s: %w", podID, err)
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("pod_sandbox_id %s: sandbox is not ready: %w", podID, store.ErrFailedPrecondition)
	}
	cfg, err := containerConfig(req.GetConfig())
	if err != nil {
		return nil, err
	}
	c, err := m.Create(ctx, sb.ID, cfg)
	if err != nil {
		return nil, fmt.Errorf("create container %s in pod sandbox %s: %w", cfg.Name, sb.ID, err)
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// StartContainer starts a created container.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	if err := m.Start(ctx, id); err != nil {
		return nil, fmt.Errorf("start container %s: %w", id, err)
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer stops a container with the given grace period in seconds; stopping an
// exited or unknown container succeeds (the CRI wants it idempotent).
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	if err := alreadyGone(m.Stop(ctx, id, time.Duration(req.GetTimeout())*time.Second), "stop container "+id); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, stopping it first; removing an unknown container
// succeeds.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	if err := alreadyGone(m.Remove(ctx, id), "remove container "+id); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// ReopenContainerLog asks the container's monitor to reopen its log file after kubelet
// rotated it.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	if err := m.ReopenLog(ctx, id); err != nil {
		return nil, fmt.Errorf("reopen log of container %s: %w", id, err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
