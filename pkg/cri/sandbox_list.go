package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// streamBatch is how many sandboxes one StreamPodSandboxes message carries: small enough
// that a batch of pods with large annotations stays far below gRPC's 4 MiB message limit,
// which is the reason the streaming RPC exists.
const streamBatch = 100

// ListPodSandbox lists the sandboxes matching the filter, from memory.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	m, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: filterSandboxes(m, req.GetFilter(), s.withInitState)}, nil
}

// StreamPodSandboxes is ListPodSandbox's server-streaming twin: the same filter and items,
// sent in batches. An empty result sends no message.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	m, err := s.sandboxes()
	if err != nil {
		return err
	}
	items := filterSandboxes(m, req.GetFilter(), s.withInitState)
	for start := 0; start < len(items); start += streamBatch {
		end := min(start+streamBatch, len(items))
		if err := stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: items[start:end]}); err != nil {
			return fmt.Errorf("send pod sandboxes %d-%d of %d: %w", start, end, len(items), err)
		}
	}
	return nil
}

// filterSandboxes applies the CRI filter exactly: the ID is a full ID or a unique prefix
// (an unknown or ambiguous one matches nothing, as in containerd), the state must be equal,
// and every label of the selector must be present with the same value.
// view adjusts each sandbox before it is matched (see withInitState).
func filterSandboxes(m SandboxManager, f *runtimeapi.PodSandboxFilter, view func(*sandbox.Sandbox) *sandbox.Sandbox) []*runtimeapi.PodSandbox {
	var candidates []*sandbox.Sandbox
	if id := f.GetId(); id != "" {
		sb, err := m.Get(id)
		if err != nil {
			return []*runtimeapi.PodSandbox{}
		}
		candidates = []*sandbox.Sandbox{sb}
	} else {
		candidates = m.List()
	}
	out := make([]*runtimeapi.PodSandbox, 0, len(candidates))
	for _, sb := range candidates {
		p := toPodSandbox(view(sb))
		if st := f.GetState(); st != nil && p.State != st.GetState() {
			continue
		}
		if !labelsMatch(p.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// labelsMatch reports whether labels has every key of selector with the same value.
func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
