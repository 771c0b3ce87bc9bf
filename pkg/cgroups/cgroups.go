// Package cgroups is a thin layer over github.com/opencontainers/cgroups for the cgroupfs
// driver: it validates cgroup paths, converts cri-mini's resource settings to the library's
// (v1 and v2), and creates, updates and removes cgroups by path.
package cgroups

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"strings"

	occ "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// ErrInvalidPath is wrapped by path validation errors.
var ErrInvalidPath = errors.New("invalid cgroup path")

// Resources are the limits cri-mini applies to a pod or container cgroup. Zero values mean
// "leave unset" (the kernel default or the parent's limit applies).
type Resources struct {
	CPUShares   uint64 // relative weight, cgroup v1 scale (2..262144); converted on v2
	CPUQuota    int64  // microseconds per period; -1 or 0 means no limit
	CPUPeriod   uint64 // microseconds
	MemoryLimit int64  // bytes; 0 means no limit
	CpusetCPUs  string // e.g. "0-1"
	CpusetMems  string
	PidsLimit   int64 // 0 means unset, -1 unlimited

	// MemorySwapLimit is memory plus swap (the v1 memsw meaning the CRI uses); 0 means
	// unset, -1 unlimited. On v2 it is converted to memory.swap.max = swap - memory.
	MemorySwapLimit int64             `json:",omitempty"`
	HugepageLimits  []HugepageLimit   `json:",omitempty"`
	Unified         map[string]string `json:",omitempty"` // cgroup v2 files → values
	// Devices, when not nil, is the cgroup's complete device access list, applied in
	// order (start it with a deny-all rule, see DefaultDeviceRules). nil leaves the
	// device rules alone: pod cgroups and resource updates carry none.
	Devices []DeviceRule `json:",omitempty"`
}

// Validate refuses values the kernel would reject with a less helpful error. Errors are
// *FieldError naming the CRI field.
func (r *Resources) Validate() error {
	return r.validate(occ.IsCgroup2UnifiedMode())
}

// ValidateStatic checks what does not depend on the host's cgroup mode (everything but
// unified keys on v1), for callers that do not hold a Manager.
func (r *Resources) ValidateStatic() error { return r.validate(true) }

// Validate checks r for this manager's cgroup mode.
func (m *Manager) Validate(r *Resources) error { return r.validate(m.v2) }

func (r *Resources) validate(v2 bool) error {
	if r == nil {
		return nil
	}
	switch {
	case r.CPUShares != 0 && (r.CPUShares < 2 || r.CPUShares > 262144):
		return fieldErr("cpu_shares", "%d out of range [2, 262144]", r.CPUShares)
	case r.CPUQuota < -1:
		return fieldErr("cpu_quota", "%d is negative", r.CPUQuota)
	case r.CPUQuota > 0 && r.CPUQuota < 1000:
		return fieldErr("cpu_quota", "%d below the kernel minimum of 1000us", r.CPUQuota)
	case r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000):
		return fieldErr("cpu_period", "%d out of range [1000, 1000000]", r.CPUPeriod)
	case r.MemoryLimit < 0:
		return fieldErr("memory_limit_in_bytes", "%d is negative", r.MemoryLimit)
	case r.PidsLimit < -1:
		return fieldErr("pids_limit", "%d is negative", r.PidsLimit)
	}
	return r.validateExtended(v2)
}

// Manager creates and manages cgroups by path relative to the cgroup root(s).
type Manager struct {
	v2 bool
}

// New returns a manager for the cgroup layout of this host.
func New() *Manager {
	return &Manager{v2: occ.IsCgroup2UnifiedMode()}
}

// IsV2 reports whether the host uses the unified (v2) hierarchy.
func (m *Manager) IsV2() bool { return m.v2 }

// CleanPath validates a cgroupfs path such as "/kubepods/burstable/pod123" and returns its
// clean absolute form. systemd slice names are refused: only the cgroupfs driver exists.
func CleanPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty path: %w", ErrInvalidPath)
	}
	if strings.HasSuffix(p, ".slice") && !strings.Contains(p, "/") {
		return "", fmt.Errorf("%q looks like a systemd slice; only the cgroupfs driver is supported: %w", p, ErrInvalidPath)
	}
	if strings.ContainsAny(p, "\x00\n") {
		return "", fmt.Errorf("%q contains NUL or newline: %w", p, ErrInvalidPath)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q escapes the cgroup root: %w", p, ErrInvalidPath)
		}
	}
	c := path.Clean("/" + p)
	if c == "/" {
		return "", fmt.Errorf("%q is the cgroup root: %w", p, ErrInvalidPath)
	}
	return c, nil
}

func (m *Manager) toLib(r *Resources) *occ.Resources {
	// SkipDevices: a pod or parent cgroup carries no device rules (containers do), and the
	// devices controller would otherwise need an allow-list to be created at all.
	lr := &occ.Resources{SkipDevices: true}
	if r == nil {
		return lr
	}
	lr.CpuQuota = r.CPUQuota
	lr.CpuPeriod = r.CPUPeriod
	lr.Memory = r.MemoryLimit
	lr.CpusetCpus = r.CpusetCPUs
	lr.CpusetMems = r.CpusetMems
	if r.PidsLimit != 0 {
		v := r.PidsLimit
		lr.PidsLimit = &v
	}
	if m.v2 {
		// v2 has cpu.weight (1..10000), not shares: the conversion runc and the kubelet use.
		if r.CPUShares != 0 {
			lr.CpuWeight = occ.ConvertCPUSharesToCgroupV2Value(r.CPUShares)
		}
		if lr.CpuQuota == 0 {
			lr.CpuQuota = -1
		}
	} else {
		lr.CpuShares = r.CPUShares
	}
	m.extendedToLib(r, lr)
	return lr
}

func (m *Manager) libManager(p string, r *Resources) (occ.Manager, error) {
	c, err := CleanPath(p)
	if err != nil {
		return nil, err
	}
	mgr, err := manager.New(&occ.Cgroup{Path: c, Resources: m.toLib(r)})
	if err != nil {
		return nil, fmt.Errorf("cgroup manager for %s: %w", c, err)
	}
	return mgr, nil
}

// Exists reports whether the cgroup exists in any hierarchy.
func (m *Manager) Exists(p string) bool {
	mgr, err := m.libManager(p, nil)
	if err != nil {
		return false
	}
	return anyDir(mgr.GetPaths())
}

// anyDir reports whether one of the cgroup's directories exists.
func anyDir(dirs map[string]string) bool {
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// Create creates the cgroup (and missing parents) without moving any process into it and
// applies r. created reports whether it did not exist before, so the caller only removes
// what it made. On error a cgroup created here is removed again.
func (m *Manager) Create(p string, r *Resources) (created bool, retErr error) {
	_, created, err := m.CreateDirs(p, r)
	return created, err
}

// CreateDirs is Create that also returns the cgroup's directories (as Dirs does), from the
// one library manager it uses: each manager the library makes looks up every hierarchy's
// mount point again (some fifty system calls on cgroup v1).
func (m *Manager) CreateDirs(p string, r *Resources) (dirs map[string]string, created bool, retErr error) {
	if err := m.Validate(r); err != nil {
		return nil, false, err
	}
	mgr, err := m.libManager(p, r)
	if err != nil {
		return nil, false, err
	}
	dirs = maps.Clone(mgr.GetPaths()) // the library's own map, which Apply may change
	existed := anyDir(dirs)
	defer func() {
		if retErr != nil && !existed {
			_ = mgr.Destroy()
		}
	}()
	// Apply(-1) creates the directories only.
	if err := mgr.Apply(-1); err != nil {
		return nil, false, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	if err := mgr.Set(m.toLib(r)); err != nil {
		return nil, false, fmt.Errorf("set resources on cgroup %s: %w", p, err)
	}
	return dirs, !existed, nil
}

// Update applies r to an existing cgroup.
func (m *Manager) Update(p string, r *Resources) error {
	if err := m.Validate(r); err != nil {
		return err
	}
	if !m.Exists(p) {
		return fmt.Errorf("cgroup %s: %w", p, os.ErrNotExist)
	}
	mgr, err := m.libManager(p, r)
	if err != nil {
		return err
	}
	if err := mgr.Set(m.toLib(r)); err != nil {
		return fmt.Errorf("set resources on cgroup %s: %w", p, err)
	}
	return nil
}

// ErrBusy is TryRemove's error for a cgroup that still has processes.
var ErrBusy = errors.New("cgroup still has processes")

// TryRemove removes a leaf cgroup in every hierarchy at once, or fails with ErrBusy while
// processes are still in it: Remove's library waits about a second per hierarchy for a
// busy cgroup (eleven hierarchies on v1), which a caller that can kill what is left must not
// pay. A cgroup with children, or any other failure, is left to Remove. Removing a missing
// cgroup is not an error.
func (m *Manager) TryRemove(p string) error {
	dirs, err := m.Dirs(p)
	if err != nil {
		return err
	}
	busy := false
	for _, dir := range dirs {
		switch err := unix.Rmdir(dir); {
		case err == nil, errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.EBUSY):
			busy = true
		default:
			return m.Remove(p)
		}
	}
	if busy {
		return fmt.Errorf("remove cgroup %s: %w", p, ErrBusy)
	}
	return nil
}

// Remove removes the cgroup and its empty children in every hierarchy. A cgroup that still
// has processes fails with EBUSY; removing a missing cgroup is not an error.
func (m *Manager) Remove(p string) error {
	mgr, err := m.libManager(p, nil)
	if err != nil {
		return err
	}
	if err := mgr.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", p, err)
	}
	return nil
}

// Dirs returns the absolute directory of the cgroup per controller ("" key on v2).
func (m *Manager) Dirs(p string) (map[string]string, error) {
	mgr, err := m.libManager(p, nil)
	if err != nil {
		return nil, err
	}
	return mgr.GetPaths(), nil
}

// AddProcess moves pid into the cgroup in every hierarchy.
func (m *Manager) AddProcess(p string, pid int) error {
	mgr, err := m.libManager(p, nil)
	if err != nil {
		return err
	}
	// Write cgroup.procs only where the cgroup exists: Create skips the v1 devices hierarchy
	// (SkipDevices), and the library's AddPid would fail with ENOENT there.
	added := 0
	for _, dir := range mgr.GetPaths() {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := occ.WriteCgroupProc(dir, pid); err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, dir, err)
		}
		added++
	}
	if added == 0 {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, p, os.ErrNotExist)
	}
	return nil
}
