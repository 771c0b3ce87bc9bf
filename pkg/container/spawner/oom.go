package spawner

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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

// clampOOMScoreAdj raises the spec's oom_score_adj to what the spawning process (the
// monitor, whose value the init inherits) may give its child. The daemon clamped it with
// its own value already; the monitor's may differ if someone changed it since.
func clampOOMScoreAdj(spec *specs.Spec) {
	if spec.Process == nil || spec.Process.OOMScoreAdj == nil {
		return
	}
	if floor := OOMScoreAdjFloor(); *spec.Process.OOMScoreAdj < floor {
		v := floor
		spec.Process.OOMScoreAdj = &v
	}
}

// capSysResource is CAP_SYS_RESOURCE's bit in /proc/<pid>/status CapEff.
const capSysResource = 24

// OOMScoreAdjFloor is the lowest oom_score_adj a child of this process can be given.
// Lowering oom_score_adj below the value a process inherited needs CAP_SYS_RESOURCE
// (kernel: __set_oom_adj, oom_score_adj_min); without it the container gets the spawning
// process's own value instead of failing to start. With the capability any value is fine.
func OOMScoreAdjFloor() int {
	if hasCapEff(capSysResource) {
		return -1000
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return -1000
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1000
	}
	return v
}

// hasCapEff reports whether this process has capability bit in its effective set.
func hasCapEff(bit uint) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
		return err == nil && mask&(1<<bit) != 0
	}
	return false
}
