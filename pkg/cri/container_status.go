package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
)

// ContainerStatus reports one container, from memory.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	c, err := m.Get(id)
	if err != nil {
		return nil, fmt.Errorf("container status %s: %w", id, err)
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: toContainerStatus(c)}
	if req.GetVerbose() {
		if resp.Info, err = containerInfo(c); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// ListContainers lists the containers matching the filter, from memory.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: s.filterContainers(m, req.GetFilter())}, nil
}

// StreamContainers is ListContainers' server-streaming twin: the same filter and items,
// sent in batches. An empty result sends no message.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	m, err := s.containers()
	if err != nil {
		return err
	}
	items := s.filterContainers(m, req.GetFilter())
	for start := 0; start < len(items); start += streamBatch {
		end := min(start+streamBatch, len(items))
		if err := stream.Send(&runtimeapi.StreamContainersResponse{Containers: items[start:end]}); err != nil {
			return fmt.Errorf("send containers %d-%d of %d: %w", start, end, len(items), err)
		}
	}
	return nil
}

// filterContainers applies the CRI filter exactly: the container ID and the pod sandbox ID
// are full IDs or unique prefixes (an unknown or ambiguous one matches nothing), the state
// must be equal, and every label of the selector must be present with the same value.
func (s *Server) filterContainers(m ContainerManager, f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var candidates []*container.Container
	if id := f.GetId(); id != "" {
		c, err := m.Get(id)
		if err != nil {
			return []*runtimeapi.Container{}
		}
		candidates = []*container.Container{c}
	} else {
		candidates = m.List()
	}
	podID := f.GetPodSandboxId()
	if podID != "" {
		pods, err := s.sandboxes()
		if err != nil {
			return []*runtimeapi.Container{}
		}
		sb, err := pods.Get(podID)
		if err != nil {
			return []*runtimeapi.Container{}
		}
		podID = sb.ID
	}
	out := make([]*runtimeapi.Container, 0, len(candidates))
	for _, c := range candidates {
		if podID != "" && c.PodSandboxID != podID {
			continue
		}
		rc := toContainer(c)
		if st := f.GetState(); st != nil && rc.State != st.GetState() {
			continue
		}
		if !labelsMatch(rc.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, rc)
	}
	return out
}
