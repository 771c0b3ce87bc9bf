package spawner

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// cgroupDirs is one container's cgroup as the daemon resolved it when it created it: the
// monitor places the init there and reads its OOM kill counter, without the cgroup library
// (see runtime.Cgroups for why the monitor binary must not link it).
type cgroupDirs struct {
	path string
	dirs map[string]string
	v2   bool
}

var _ runtime.Cgroups = (*cgroupDirs)(nil)

// cgroupsRoot is where the host mounts its cgroup hierarchies (the cgroupfs driver's, as
// the daemon's library assumes too); the directories the daemon sends must be under it.
const cgroupsRoot = "/sys/fs/cgroup"

func newCgroupDirs(p string, dirs map[string]string) (*cgroupDirs, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("cgroup %s: no directories", p)
	}
	for k, d := range dirs {
		if filepath.Clean(d) != d || !strings.HasPrefix(d, cgroupsRoot+"/") {
			return nil, fmt.Errorf("cgroup %s: %s directory %q is not under %s", p, k, d, cgroupsRoot)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupsRoot, &st); err != nil {
		return nil, fmt.Errorf("cgroup %s: statfs %s: %w", p, cgroupsRoot, err)
	}
	c := &cgroupDirs{path: path.Clean("/" + p), dirs: maps.Clone(dirs), v2: st.Type == unix.CGROUP2_SUPER_MAGIC}
	if _, ok := dirs[""]; c.v2 && !ok {
		return nil, fmt.Errorf("cgroup %s: no unified directory on a cgroup v2 host", p)
	}
	return c, nil
}

func (c *cgroupDirs) IsV2() bool { return c.v2 }

func (c *cgroupDirs) Dirs(p string) (map[string]string, error) {
	if path.Clean("/"+p) != c.path {
		return nil, fmt.Errorf("cgroup %s: only the directories of %s are known", p, c.path)
	}
	return maps.Clone(c.dirs), nil
}

// Remove is not the monitor's job: the daemon created the cgroup and removes it.
func (c *cgroupDirs) Remove(p string) error {
	return fmt.Errorf("remove cgroup %s: the daemon owns it", p)
}

// OOMKillCount reads the oom_kill counter of the cgroup: v1 memory.oom_control, v2
// memory.events (the files and key the library reads).
func (c *cgroupDirs) OOMKillCount(p string) (uint64, error) {
	dirs, err := c.Dirs(p)
	if err != nil {
		return 0, err
	}
	dir, file := dirs["memory"], "memory.oom_control"
	if c.v2 {
		dir, file = dirs[""], "memory.events"
	}
	if dir == "" {
		return 0, fmt.Errorf("oom kill count of cgroup %s: no memory hierarchy", p)
	}
	n, err := readKey(filepath.Join(dir, file), "oom_kill")
	if err != nil {
		return 0, fmt.Errorf("oom kill count of cgroup %s: %w", p, err)
	}
	return n, nil
}

// readKey returns the value of "key value" lines in a cgroup file.
func readKey(name, key string) (uint64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", name, key, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	return 0, fmt.Errorf("%s: no %s: %w", name, key, errors.ErrUnsupported)
}
