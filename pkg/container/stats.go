package container

import (
	"fmt"
	"sync"
	"time"
)

// Stats is a container's (or pod's) resource usage at one moment.
type Stats struct {
	Timestamp time.Time
	// CPUUsageNanos is the cumulative CPU time; CPUNanoCores the rate since the previous
	// sample (or since the start for the first one); CPURateKnown says whether it is set.
	CPUUsageNanos uint64
	CPUNanoCores  uint64
	CPURateKnown  bool

	MemoryUsage, MemoryWorkingSet, MemoryRSS uint64
	// MemoryAvailable is limit minus working set; MemoryLimited says there is a limit
	// (without one, "available" is the node's business, not the cgroup's).
	MemoryAvailable             uint64
	MemoryLimited               bool
	PageFaults, MajorPageFaults uint64
	Processes                   uint64

	// WritableLayer is nil when no walk of the upper directory has finished yet.
	WritableLayer *LayerUsage
}

// LayerUsage is the disk use of a container's writable layer.
type LayerUsage struct {
	Timestamp  time.Time
	Mountpoint string // of the filesystem holding the layer
	UsedBytes  uint64
	InodesUsed uint64
}

// cpuSample is the previous CPU reading of a cgroup, for the rate.
type cpuSample struct {
	at    time.Time
	usage uint64
}

// statsState is the Manager's memory for stats: the previous CPU samples (by cgroup path)
// and the writable layer usage cache. Its zero value is ready to use.
type statsState struct {
	mu     sync.Mutex
	cpu    map[string]cpuSample
	layers layerCache
}

// cpuRate records the sample and returns the usage rate in nanocores since the previous
// sample of the same cgroup, or since since (the container's start) for the first one.
func (s *statsState) cpuRate(key string, at time.Time, usage uint64, since time.Time) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpu == nil {
		s.cpu = map[string]cpuSample{}
	}
	prev, ok := s.cpu[key]
	s.cpu[key] = cpuSample{at: at, usage: usage}
	if !ok {
		if since.IsZero() || !at.After(since) {
			return 0, false
		}
		prev = cpuSample{at: since}
	}
	dt := at.Sub(prev.at)
	if dt <= 0 || usage < prev.usage {
		return 0, false
	}
	return uint64(float64(usage-prev.usage) / dt.Seconds()), true
}

// forget drops the CPU sample of a removed container or pod.
func (s *statsState) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cpu, key)
}

// cgroupStats reads the cgroup's usage and derives the rate; key names the CPU sample
// (the container's cgroup path, or podStatsKey).
func (m *Manager) cgroupStats(key, cgroup string, since time.Time) (*Stats, error) {
	cs, err := m.o.Cgroups.Stats(cgroup)
	if err != nil {
		return nil, err
	}
	st := &Stats{
		Timestamp:        cs.Timestamp,
		CPUUsageNanos:    cs.CPUUsageNanos,
		MemoryUsage:      cs.MemoryUsageBytes,
		MemoryWorkingSet: cs.MemoryWorkingSet,
		MemoryRSS:        cs.MemoryRSS,
		MemoryAvailable:  cs.AvailableBytes(),
		MemoryLimited:    cs.MemoryLimit > 0,
		PageFaults:       cs.PageFaults,
		MajorPageFaults:  cs.MajorPageFaults,
		Processes:        cs.Pids,
	}
	st.CPUNanoCores, st.CPURateKnown = m.stats.cpuRate(key, cs.Timestamp, cs.CPUUsageNanos, since)
	return st, nil
}

// Stats reports a container's usage: from its cgroup while it has one (created or running),
// and its writable layer from the layer cache, which is refreshed in the background so that
// this never waits on a walk of the disk.
func (m *Manager) Stats(idOrPrefix string) (*Container, *Stats, error) {
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return nil, nil, err
	}
	c := e.get()
	st := &Stats{Timestamp: time.Now()}
	if c.CgroupPath != "" && c.State != StateExited {
		cst, err := m.cgroupStats(c.CgroupPath, c.CgroupPath, c.StartedAt)
		if err != nil && c.State == StateRunning {
			return nil, nil, fmt.Errorf("stats of container %s: %w", c.ID, err)
		}
		if err == nil {
			st = cst
		}
	}
	st.WritableLayer = m.stats.layers.get(m.ctx, c.ID, upperDir(c.RootfsDir), &m.wg)
	return &c, st, nil
}

// PodStats reports the pod cgroup's usage, and the network counters of the pod's network
// namespace, read through a running container of the pod (there is no pod process).
func (m *Manager) PodStats(podID string) (*Stats, []InterfaceStats, error) {
	sb, err := m.o.Sandboxes.Get(podID)
	if err != nil {
		return nil, nil, fmt.Errorf("pod sandbox %s: %w", podID, err)
	}
	st := &Stats{Timestamp: time.Now()}
	if sb.CgroupParent != "" && m.o.Cgroups.Exists(sb.CgroupParent) {
		if st, err = m.cgroupStats(podStatsKey(sb.ID), sb.CgroupParent, sb.CreatedAt); err != nil {
			return nil, nil, fmt.Errorf("stats of pod sandbox %s: %w", sb.ID, err)
		}
	}
	if sb.NetNSPath == "" {
		return st, nil, nil // host network: the node's counters are not the pod's
	}
	for _, c := range m.List() {
		if c.PodSandboxID != sb.ID || c.State != StateRunning || c.Pid <= 0 {
			continue
		}
		if ifs, err := netDevStats(c.Pid); err == nil {
			return st, ifs, nil
		}
	}
	return st, nil, nil
}

// forgetStats drops what the stats keep about a removed container.
func (m *Manager) forgetStats(c *Container) {
	if c.CgroupPath != "" {
		m.stats.forget(c.CgroupPath)
	}
	m.stats.layers.forget(c.ID)
}

// podStatsKey names a pod's CPU sample; RemovePod forgets it.
func podStatsKey(podID string) string { return "pod:" + podID }
