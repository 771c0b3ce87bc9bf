package cri

import (
	"context"
	"fmt"
	"maps"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// PodSandboxStats reports a pod's cgroup usage, its network counters and its containers'
// stats. ListMetricDescriptors and ListPodSandboxMetrics stay Unimplemented: kubelet asks
// for them only with the PodAndContainerStatsFromCRI gate and the Prometheus-style metrics.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sbm, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetPodSandboxId()
	if id == "" {
		return nil, invalidArg("pod_sandbox_id", "must not be empty")
	}
	sb, err := sbm.Get(id)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox stats %s: %w", id, err)
	}
	st, err := s.podStats(m, sb)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox stats %s: %w", id, err)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the pods matching the filter (ID or unique prefix, labels,
// exactly like ListPodSandbox). A pod that fails meanwhile is skipped.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	sbm, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	f := req.GetFilter()
	pods := filterSandboxes(sbm, &runtimeapi.PodSandboxFilter{Id: f.GetId(), LabelSelector: f.GetLabelSelector()}, s.withInitState)
	out := make([]*runtimeapi.PodSandboxStats, 0, len(pods))
	for _, p := range pods {
		sb, err := sbm.Get(p.Id)
		if err != nil {
			continue
		}
		st, err := s.podStats(m, sb)
		if err != nil {
			continue
		}
		out = append(out, st)
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

func (s *Server) podStats(m ContainerManager, sb *sandbox.Sandbox) (*runtimeapi.PodSandboxStats, error) {
	st, ifs, err := m.PodStats(sb.ID)
	if err != nil {
		return nil, err
	}
	lx := &runtimeapi.LinuxPodSandboxStats{
		Cpu:        toCPUUsage(st),
		Memory:     toMemoryUsage(st),
		Process:    &runtimeapi.ProcessUsage{Timestamp: st.Timestamp.UnixNano(), ProcessCount: u64(st.Processes)},
		Containers: containerStatsOf(m, s.filterContainers(m, &runtimeapi.ContainerFilter{PodSandboxId: sb.ID})),
	}
	if len(ifs) > 0 {
		lx.Network = toNetworkUsage(st, ifs)
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.ID,
			Metadata:    podSandboxMetadata(&sb.Config),
			Labels:      maps.Clone(sb.Config.Labels),
			Annotations: maps.Clone(sb.Config.Annotations),
		},
		Linux: lx,
	}, nil
}

// toNetworkUsage reports the interfaces; the default one is eth0 (what CNI names the
// pod's interface), else the first.
func toNetworkUsage(st *container.Stats, ifs []container.InterfaceStats) *runtimeapi.NetworkUsage {
	nu := &runtimeapi.NetworkUsage{Timestamp: st.Timestamp.UnixNano()}
	for _, i := range ifs {
		u := &runtimeapi.NetworkInterfaceUsage{
			Name: i.Name, RxBytes: u64(i.RxBytes), RxErrors: u64(i.RxErrors), TxBytes: u64(i.TxBytes), TxErrors: u64(i.TxErrors),
		}
		nu.Interfaces = append(nu.Interfaces, u)
		if i.Name == "eth0" || nu.DefaultInterface == nil {
			nu.DefaultInterface = u
		}
	}
	return nu
}
