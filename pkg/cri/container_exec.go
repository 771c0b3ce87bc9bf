package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ExecSync runs a command in a running container and returns its output and exit code.
// A non-zero exit is a successful call; a timeout is DeadlineExceeded.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	if len(req.GetCmd()) == 0 {
		return nil, invalidArg("cmd", "must not be empty")
	}
	if req.GetTimeout() < 0 {
		return nil, invalidArg("timeout", "must not be negative, got %d", req.GetTimeout())
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	stdout, stderr, code, err := m.ExecSync(ctx, id, req.GetCmd(), timeout)
	if err != nil {
		return nil, fmt.Errorf("exec sync in container %s: %w", id, err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}
