package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	occ "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	// The library manages device rules only when this package is linked in: v1 writes
	// devices.allow/deny, v2 attaches an eBPF program (pure Go, github.com/cilium/ebpf).
	_ "github.com/opencontainers/cgroups/devices"
	devconf "github.com/opencontainers/cgroups/devices/config"
)

// ErrInvalidResources is wrapped by every FieldError.
var ErrInvalidResources = errors.New("invalid resources")

// FieldError is a refused resource value. Field is the CRI name of the field
// (LinuxContainerResources), so the gRPC layer can name it in its answer.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap lets errors.Is(err, ErrInvalidResources) match.
func (e *FieldError) Unwrap() error { return ErrInvalidResources }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// HugepageLimit limits one huge page size; PageSize is written as the kernel's hugetlb
// files name it ("2MB", "1GB").
type HugepageLimit struct {
	PageSize string `json:"pageSize"`
	Limit    uint64 `json:"limit"`
}

// DeviceRule is one device cgroup rule. Type is "a" (all), "c" or "b"; a nil Major or
// Minor is the wildcard; Access is a subset of "rwm".
type DeviceRule struct {
	Allow  bool   `json:"allow"`
	Type   string `json:"type"`
	Major  *int64 `json:"major,omitempty"`
	Minor  *int64 `json:"minor,omitempty"`
	Access string `json:"access"`
}

func i64(v int64) *int64 { return &v }

// DefaultDeviceRules are the devices every container may use, the set containerd's
// default spec allows: the nodes the init binds into /dev (null, zero, full, random,
// urandom, tty), the console, the devpts instance's ptmx and its pts replicas, and
// /dev/net/tun (creating a tun device still needs CAP_NET_ADMIN). They follow a deny-all rule: anything else, a host
// disk in particular, cannot be opened or created even by a process with CAP_MKNOD.
func DefaultDeviceRules() []DeviceRule {
	c := func(major, minor int64) DeviceRule {
		r := DeviceRule{Allow: true, Type: "c", Major: i64(major), Access: "rwm"}
		if minor >= 0 {
			r.Minor = i64(minor)
		}
		return r
	}
	return []DeviceRule{
		{Allow: false, Type: "a", Access: "rwm"},
		c(1, 3), c(1, 5), c(1, 7), c(1, 8), c(1, 9), // null zero full random urandom
		c(5, 0), c(5, 1), c(5, 2), // tty console ptmx
		c(136, -1), // pts/*
		c(10, 200), // net/tun
	}
}

func (d DeviceRule) toLib() (*devconf.Rule, error) {
	r := &devconf.Rule{
		Allow: d.Allow, Major: devconf.Wildcard, Minor: devconf.Wildcard,
		Permissions: devconf.Permissions(d.Access),
	}
	switch d.Type {
	case "a", "":
		r.Type = devconf.WildcardDevice
	case "c":
		r.Type = devconf.CharDevice
	case "b":
		r.Type = devconf.BlockDevice
	default:
		return nil, fieldErr("devices", "device type %q is not a, c or b", d.Type)
	}
	if d.Major != nil {
		r.Major = *d.Major
	}
	if d.Minor != nil {
		r.Minor = *d.Minor
	}
	if d.Access == "" {
		r.Permissions = "rwm"
	}
	if !r.Permissions.IsValid() {
		return nil, fieldErr("devices", "access %q is not a subset of rwm", d.Access)
	}
	return r, nil
}

// validateExtended checks the fields beyond CPU and memory limits. v2 is the host's mode:
// unified keys exist only there.
func (r *Resources) validateExtended(v2 bool) error {
	switch {
	case r.MemorySwapLimit < -1:
		return fieldErr("memory_swap_limit_in_bytes", "%d is negative", r.MemorySwapLimit)
	case r.MemorySwapLimit > 0 && r.MemoryLimit <= 0:
		return fieldErr("memory_swap_limit_in_bytes", "set without memory_limit_in_bytes")
	case r.MemorySwapLimit > 0 && r.MemorySwapLimit < r.MemoryLimit:
		return fieldErr("memory_swap_limit_in_bytes", "%d is below memory_limit_in_bytes %d (it counts memory plus swap)", r.MemorySwapLimit, r.MemoryLimit)
	case len(r.Unified) > 0 && !v2:
		return fieldErr("unified", "cgroup v2 keys given but this host uses cgroup v1")
	}
	for k := range r.Unified {
		// A key is a file of the cgroup: no path, and not the files that move processes.
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." || !strings.Contains(k, ".") {
			return fieldErr("unified", "key %q is not a cgroup interface file name", k)
		}
		if strings.HasPrefix(k, "cgroup.") && k != "cgroup.max.depth" && k != "cgroup.max.descendants" {
			return fieldErr("unified", "key %q is not a resource", k)
		}
	}
	sizes := occ.HugePageSizes()
	for _, h := range r.HugepageLimits {
		if !slices.Contains(sizes, h.PageSize) {
			return fieldErr("hugepage_limits", "page size %q is not one of this host's %v", h.PageSize, sizes)
		}
	}
	for _, d := range r.Devices {
		if _, err := d.toLib(); err != nil {
			return err
		}
	}
	return nil
}

// extendedToLib sets the library fields of the extended resources on lr.
func (m *Manager) extendedToLib(r *Resources, lr *occ.Resources) {
	lr.MemorySwap = r.MemorySwapLimit
	if !m.v2 && lr.MemorySwap != 0 && !v1SwapAccounting() {
		// Without swap accounting (swapaccount=0) there is no memsw file to write; kubelet
		// sends the field for every container, so refusing it would refuse every pod.
		lr.MemorySwap = 0
	}
	if len(r.HugepageLimits) > 0 && m.hugetlbAvailable() {
		for _, h := range r.HugepageLimits {
			lr.HugetlbLimit = append(lr.HugetlbLimit, &occ.HugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
		}
	}
	if len(r.Unified) > 0 {
		lr.Unified = r.Unified
	}
	if r.Devices != nil {
		lr.SkipDevices = false
		for _, d := range r.Devices {
			if rule, err := d.toLib(); err == nil { // validated before
				lr.Devices = append(lr.Devices, rule)
			}
		}
	}
}

func v1SwapAccounting() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// hugetlbAvailable reports whether the hugetlb controller can be used by this manager. On
// a v1 host whose hugetlb controller lives in the (otherwise empty) unified hierarchy
// there is no v1 hugetlb directory to write: limits are then skipped rather than failing
// every container, since kubelet sends them for every page size of the node.
func (m *Manager) hugetlbAvailable() bool {
	if m.v2 {
		b, err := os.ReadFile(filepath.Join(fs2.UnifiedMountpoint, "cgroup.controllers"))
		return err == nil && slices.Contains(strings.Fields(string(b)), "hugetlb")
	}
	_, err := os.Stat("/sys/fs/cgroup/hugetlb")
	return err == nil
}
