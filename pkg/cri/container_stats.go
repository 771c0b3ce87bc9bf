package cri

import (
	"context"
	"fmt"
	"maps"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
)

// ContainerStats reports one container's CPU, memory and writable layer usage. An exited
// container has no cgroup left: its CPU and memory are reported empty.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if id == "" {
		return nil, invalidArg("container_id", "must not be empty")
	}
	c, st, err := m.Stats(id)
	if err != nil {
		return nil, fmt.Errorf("container stats %s: %w", id, err)
	}
	return &runtimeapi.ContainerStatsResponse{Stats: toContainerStats(c, st)}, nil
}

// ListContainerStats reports the containers that match the filter exactly as
// ListContainers matches (ID or unique prefix, pod sandbox ID, labels). Exited containers
// are left out: they use nothing any more.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	f := req.GetFilter()
	items := s.filterContainers(m, &runtimeapi.ContainerFilter{
		Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector(),
	})
	return &runtimeapi.ListContainerStatsResponse{Stats: containerStatsOf(m, items)}, nil
}

// containerStatsOf collects the stats of the listed containers that are not exited; one
// that disappears or fails meanwhile is skipped rather than failing the whole list.
func containerStatsOf(m ContainerManager, items []*runtimeapi.Container) []*runtimeapi.ContainerStats {
	out := make([]*runtimeapi.ContainerStats, 0, len(items))
	for _, it := range items {
		if it.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			continue
		}
		c, st, err := m.Stats(it.Id)
		if err != nil {
			continue
		}
		out = append(out, toContainerStats(c, st))
	}
	return out
}

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

func toContainerStats(c *container.Container, st *container.Stats) *runtimeapi.ContainerStats {
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
			Labels:      maps.Clone(c.Config.Labels),
			Annotations: maps.Clone(c.Config.Annotations),
		},
		Cpu:    toCPUUsage(st),
		Memory: toMemoryUsage(st),
	}
	if l := st.WritableLayer; l != nil {
		out.WritableLayer = &runtimeapi.FilesystemUsage{
			Timestamp:  l.Timestamp.UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: l.Mountpoint},
			UsedBytes:  u64(l.UsedBytes),
			InodesUsed: u64(l.InodesUsed),
		}
	}
	return out
}

func toCPUUsage(st *container.Stats) *runtimeapi.CpuUsage {
	cpu := &runtimeapi.CpuUsage{Timestamp: st.Timestamp.UnixNano(), UsageCoreNanoSeconds: u64(st.CPUUsageNanos)}
	if st.CPURateKnown {
		cpu.UsageNanoCores = u64(st.CPUNanoCores)
	}
	return cpu
}

func toMemoryUsage(st *container.Stats) *runtimeapi.MemoryUsage {
	mu := &runtimeapi.MemoryUsage{
		Timestamp:       st.Timestamp.UnixNano(),
		WorkingSetBytes: u64(st.MemoryWorkingSet),
		UsageBytes:      u64(st.MemoryUsage),
		RssBytes:        u64(st.MemoryRSS),
		PageFaults:      u64(st.PageFaults),
		MajorPageFaults: u64(st.MajorPageFaults),
	}
	if st.MemoryLimited {
		mu.AvailableBytes = u64(st.MemoryAvailable)
	}
	return mu
}
