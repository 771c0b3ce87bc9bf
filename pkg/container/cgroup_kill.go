package container

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// killCgroup sends SIGKILL to every process listed in the cgroup. A container without a PID
// namespace of its own (PID mode POD, NODE or TARGET) does not take its other processes with
// it when its init exits, as the init of a namespace does: they stay in its cgroup, and the
// cgroup cannot be removed until they are gone (containerd's shim kills them the same way).
// Best effort: the caller retries the removal.
func (m *Manager) killCgroup(p string) {
	dirs, err := m.o.Cgroups.Dirs(p)
	if err != nil {
		return
	}
	// On v1 every hierarchy lists the same processes: each is killed once.
	killed := map[int]bool{}
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !killed[pid] {
				killed[pid] = true
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
}
