package cgroups

import (
	"fmt"
	"time"
)

// unlimited is where a memory limit stops meaning anything: v1 reports "no limit" as
// PAGE_COUNTER_MAX pages (about 2^63), v2 as "max", which the library reads as 2^64-1.
const unlimited = 1 << 62

// Stats is the subset of cgroup statistics cri-mini reports.
type Stats struct {
	Timestamp        time.Time
	CPUUsageNanos    uint64
	MemoryUsageBytes uint64
	MemoryWorkingSet uint64
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	// MemoryLimit is the cgroup's own limit; 0 when it has none.
	MemoryLimit uint64
	OOMKills    uint64
	Pids        uint64
}

// AvailableBytes is what the cgroup may still use before its limit (kubelet's eviction
// signal): limit minus working set, 0 without a limit.
func (s *Stats) AvailableBytes() uint64 {
	if s.MemoryLimit == 0 || s.MemoryWorkingSet >= s.MemoryLimit {
		return 0
	}
	return s.MemoryLimit - s.MemoryWorkingSet
}

// Stats reads usage counters of the cgroup.
func (m *Manager) Stats(p string) (*Stats, error) {
	mgr, err := m.libManager(p, nil)
	if err != nil {
		return nil, err
	}
	s, err := mgr.GetStats()
	if err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", p, err)
	}
	out := &Stats{
		Timestamp:        time.Now(),
		CPUUsageNanos:    s.CpuStats.CpuUsage.TotalUsage,
		MemoryUsageBytes: s.MemoryStats.Usage.Usage,
		Pids:             s.PidsStats.Current,
	}
	if l := s.MemoryStats.Usage.Limit; l < unlimited {
		out.MemoryLimit = l
	}
	// v1 memory.stat has per-cgroup and hierarchical ("total_") keys: the hierarchical
	// ones count the cgroup's children too, as v2's keys always do.
	ms := s.MemoryStats.Stats
	key := func(v1, v2 string) uint64 {
		if m.v2 {
			return ms[v2]
		}
		return ms[v1]
	}
	// Working set = usage - inactive file pages, as cAdvisor and the kubelet compute it.
	inactive := key("total_inactive_file", "inactive_file")
	if out.MemoryUsageBytes > inactive {
		out.MemoryWorkingSet = out.MemoryUsageBytes - inactive
	}
	out.MemoryRSS = key("total_rss", "anon")
	out.PageFaults = key("total_pgfault", "pgfault")
	out.MajorPageFaults = key("total_pgmajfault", "pgmajfault")
	if n, err := mgr.OOMKillCount(); err == nil {
		out.OOMKills = n
	}
	return out, nil
}

// OOMKillCount reads how many processes the OOM killer killed in the cgroup since it was
// created (v1 memory.oom_control oom_kill, v2 memory.events oom_kill).
func (m *Manager) OOMKillCount(p string) (uint64, error) {
	mgr, err := m.libManager(p, nil)
	if err != nil {
		return 0, err
	}
	n, err := mgr.OOMKillCount()
	if err != nil {
		return 0, fmt.Errorf("oom kill count of cgroup %s: %w", p, err)
	}
	return n, nil
}
