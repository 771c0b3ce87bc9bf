package container

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// killCgroup sends SIGKILL to every process listed in the cgroup. A container without a PID
// namespace of its own (PID mode POD, NODE or TARGET) does not take its other processes with
// it when its init exits, as the init of a namespace does: they stay in its cgroup, and the
// cgroup cannot be removed until they are gone (containerd's shim kills them the same way).
// Best effort: the caller retries the removal. It returns how many processes it found (a
// process that has exited is no longer listed, even before it is reaped).
func (m *Manager) killCgroup(p string) int {
	pids := m.cgroupPids(p)
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	return len(pids)
}

// cgroupPids lists the processes in the cgroup, each once (on v1 every hierarchy lists
// the same ones).
func (m *Manager) cgroupPids(p string) []int {
	dirs, err := m.o.Cgroups.Dirs(p)
	if err != nil {
		return nil
	}
	seen := map[int]bool{}
	var pids []int
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// killLeftovers kills what is left of a container whose monitor died, and waits (at most
// killWait) until its cgroup lists no process. Its processes were the monitor's children:
// the kernel reparented them and they run on unsupervised, their exit unrecorded and their
// output going nowhere. Reported EXITED they must be gone, or kubelet starts the
// container's next instance next to them. Without a cgroup they cannot be found.
func (m *Manager) killLeftovers(ctx context.Context, c Container) {
	if c.CgroupPath == "" {
		return
	}
	deadline := time.Now().Add(killWait)
	for m.killCgroup(c.CgroupPath) > 0 {
		if time.Now().After(deadline) {
			klog.FromContext(ctx).Info("Processes of a container whose monitor died survive SIGKILL",
				"containerID", c.ID, "cgroup", c.CgroupPath)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
