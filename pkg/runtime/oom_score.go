package runtime

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

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

// clampOOMScoreAdj raises v to what this process may set. The daemon clamped the spec with
// its own floor already; the init inherits the monitor's value, which may have been
// changed since, so the init clamps again right before it writes.
func clampOOMScoreAdj(v int) int {
	return max(v, OOMScoreAdjFloor())
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
