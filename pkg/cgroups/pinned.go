package cgroups

import (
	"fmt"
	"maps"

	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
)

// WithDirs returns a manager that answers Dirs and OOMKillCount for cgroup p from dirs
// (as Dirs returned them) instead of asking the library. The library finds a cgroup's
// directories by reading the mount table and this process's cgroups, which the first time
// in a process costs milliseconds (and more on a host with many mounts): the monitor, a
// fresh process per pod, gets the directories the daemon resolved when it created the
// container's cgroup. Everything else, and other paths, go through m.
func (m *Manager) WithDirs(p string, dirs map[string]string) (*Manager, error) {
	c, err := CleanPath(p)
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("cgroup %s: no directories: %w", c, ErrInvalidPath)
	}
	if _, ok := dirs[""]; m.v2 && !ok {
		return nil, fmt.Errorf("cgroup %s: no unified directory given on cgroup v2: %w", c, ErrInvalidPath)
	}
	out := *m
	out.pinPath, out.pinDirs = c, maps.Clone(dirs)
	return &out, nil
}

// pinned returns the directories WithDirs gave for p (nil when p is not that cgroup).
func (m *Manager) pinned(p string) map[string]string {
	if m.pinDirs == nil {
		return nil
	}
	if c, err := CleanPath(p); err != nil || c != m.pinPath {
		return nil
	}
	return m.pinDirs
}

// pinnedOOMKillCount reads the kill counter from a directory WithDirs gave, as the
// library's managers do (v1 memory.oom_control, v2 memory.events).
func (m *Manager) pinnedOOMKillCount(p string, dirs map[string]string) (uint64, error) {
	var (
		n   uint64
		err error
	)
	if m.v2 {
		n, err = fs2.OOMKillCount(dirs[""])
	} else {
		dir, ok := dirs["memory"]
		if !ok {
			return 0, fmt.Errorf("oom kill count of cgroup %s: no memory hierarchy", p)
		}
		n, err = fs.OOMKillCount(dir)
	}
	if err != nil {
		return 0, fmt.Errorf("oom kill count of cgroup %s: %w", p, err)
	}
	return n, nil
}
