package spawner

// oomBaseline attributes OOM kills to one run of a container: the cgroup's kill counter
// (v1 memory.oom_control oom_kill, v2 memory.events oom_kill) is read when the process is
// created and again when it exits, and only an increase in between counts. A counter that
// is cumulative over the cgroup's life (a reused cgroup, a pod-level counter) can then
// never turn a later normal exit into "OOMKilled".
type oomBaseline struct {
	cgm    oomCounter
	cgroup string
	start  uint64
	ok     bool // the start value was read; without it no kill is attributed
}

// oomCounter reads a cgroup's OOM kill counter (cgroupDirs, or *cgroups.Manager in tests).
type oomCounter interface {
	OOMKillCount(cgroup string) (uint64, error)
}

func newOOMBaseline(cgm oomCounter, cgroup string) oomBaseline {
	b := oomBaseline{cgm: cgm, cgroup: cgroup}
	if cgroup == "" || cgm == nil {
		return b
	}
	n, err := cgm.OOMKillCount(cgroup)
	if err != nil {
		return b
	}
	b.start, b.ok = n, true
	return b
}

// killedSince reports whether the counter grew since the baseline was taken.
func (b oomBaseline) killedSince() bool {
	if !b.ok {
		return false
	}
	n, err := b.cgm.OOMKillCount(b.cgroup)
	return err == nil && n > b.start
}
