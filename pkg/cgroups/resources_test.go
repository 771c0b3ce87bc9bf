package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestValidateNamesField(t *testing.T) {
	tests := []struct {
		name      string
		r         *Resources
		v2        bool
		wantField string // "" means valid
	}{
		{"ok v1", &Resources{MemoryLimit: 64 << 20, MemorySwapLimit: 128 << 20}, false, ""},
		{"unlimited swap", &Resources{MemorySwapLimit: -1}, false, ""},
		{"shares", &Resources{CPUShares: 1}, false, "cpu_shares"},
		{"quota", &Resources{CPUQuota: -2}, false, "cpu_quota"},
		{"period", &Resources{CPUPeriod: 10}, false, "cpu_period"},
		{"memory", &Resources{MemoryLimit: -5}, false, "memory_limit_in_bytes"},
		{"swap negative", &Resources{MemorySwapLimit: -2}, false, "memory_swap_limit_in_bytes"},
		{"swap below memory", &Resources{MemoryLimit: 64 << 20, MemorySwapLimit: 32 << 20}, false, "memory_swap_limit_in_bytes"},
		{"swap without memory", &Resources{MemorySwapLimit: 32 << 20}, false, "memory_swap_limit_in_bytes"},
		{"unified on v1", &Resources{Unified: map[string]string{"memory.high": "1M"}}, false, "unified"},
		{"unified on v2", &Resources{Unified: map[string]string{"memory.high": "1M"}}, true, ""},
		{"unified path key", &Resources{Unified: map[string]string{"../memory.max": "1"}}, true, "unified"},
		{"unified procs", &Resources{Unified: map[string]string{"cgroup.procs": "1"}}, true, "unified"},
		{"hugepage size", &Resources{HugepageLimits: []HugepageLimit{{PageSize: "3MB", Limit: 1}}}, false, "hugepage_limits"},
		{"device type", &Resources{Devices: []DeviceRule{{Allow: true, Type: "x", Access: "r"}}}, false, "devices"},
		{"device access", &Resources{Devices: []DeviceRule{{Allow: true, Type: "c", Access: "rwz"}}}, false, "devices"},
		{"default devices", &Resources{Devices: DefaultDeviceRules()}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.validate(tt.v2)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || !errors.Is(err, ErrInvalidResources) {
				t.Fatalf("err = %v, want a FieldError on %s", err, tt.wantField)
			}
		})
	}
}

func TestToLib(t *testing.T) {
	r := &Resources{
		CPUShares: 1024, MemoryLimit: 64 << 20, MemorySwapLimit: -1,
		Unified: map[string]string{"memory.high": "max"}, Devices: DefaultDeviceRules(),
	}
	v1 := (&Manager{v2: false}).toLib(r)
	if v1.CpuShares != 1024 || v1.CpuWeight != 0 || v1.SkipDevices || len(v1.Devices) != len(r.Devices) {
		t.Errorf("v1: shares %d weight %d skipDevices %v devices %d", v1.CpuShares, v1.CpuWeight, v1.SkipDevices, len(v1.Devices))
	}
	v2 := (&Manager{v2: true}).toLib(r)
	if v2.CpuShares != 0 || v2.CpuWeight != 100 || v2.CpuQuota != -1 || v2.MemorySwap != -1 || v2.Unified["memory.high"] != "max" {
		t.Errorf("v2: shares %d weight %d quota %d swap %d unified %v", v2.CpuShares, v2.CpuWeight, v2.CpuQuota, v2.MemorySwap, v2.Unified)
	}
	if first := v2.Devices[0]; first.Allow || first.Type != 'a' {
		t.Errorf("first device rule %+v is not deny-all", first)
	}
	pod := (&Manager{}).toLib(&Resources{MemoryLimit: 1 << 20})
	if !pod.SkipDevices || pod.Devices != nil {
		t.Errorf("resources without devices must leave device rules alone: %+v", pod)
	}
}

// forbiddenDevices are host devices outside the default set: a block device of this host
// when it has one (a disk), and /dev/kmsg (char 1:11), which every kernel has.
func forbiddenDevices() []struct {
	typ          uint32
	name         string
	major, minor uint32
} {
	out := []struct {
		typ          uint32
		name         string
		major, minor uint32
	}{{unix.S_IFCHR, "kmsg", 1, 11}}
	matches, _ := filepath.Glob("/sys/block/*/dev")
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var major, minor uint32
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err == nil {
			out = append(out, struct {
				typ          uint32
				name         string
				major, minor uint32
			}{unix.S_IFBLK, "disk", major, minor})
			break
		}
	}
	return out
}

// runInCgroup runs script with sh inside the cgroup p: the shell waits for a line on
// stdin, so it is in the cgroup before it runs anything.
func runInCgroup(t *testing.T, m *Manager, p, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read x; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.AddProcess(p, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("AddProcess: %v", err)
	}
	_, _ = in.Write([]byte("go\n"))
	_ = in.Close()
	err = cmd.Wait()
	return out.String(), err
}

func TestDeviceRulesDenyHostDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups and device nodes")
	}
	m := New()
	p := "/cri-mini-test-" + randName(t)
	if _, err := m.Create(p, &Resources{Devices: DefaultDeviceRules()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Remove(p); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	})
	if !m.IsV2() {
		dirs, _ := m.Dirs(p)
		list := readFirst(t, dirs, "devices", "devices.list")
		if strings.Contains(list, "a *:* rwm") || !strings.Contains(list, "c 1:3 rwm") || !strings.Contains(list, "c 136:* rwm") {
			t.Fatalf("devices.list:\n%s", list)
		}
	}
	if out, err := runInCgroup(t, m, p, "head -c 1 /dev/null && head -c 1 /dev/zero >/dev/null"); err != nil {
		t.Errorf("default devices: %v (output %q)", err, out)
	}
	dir := t.TempDir()
	for _, d := range forbiddenDevices() {
		node := filepath.Join(dir, d.name)
		if err := unix.Mknod(node, d.typ|0o600, int(unix.Mkdev(d.major, d.minor))); err != nil {
			t.Fatalf("mknod %s: %v", node, err)
		}
		typ := "c"
		if d.typ == unix.S_IFBLK {
			typ = "b"
		}
		for _, tt := range []struct{ name, script string }{
			{"open", "head -c 1 " + node + " >/dev/null"},
			{"mknod", fmt.Sprintf("mknod %s2 %s %d %d", node, typ, d.major, d.minor)},
		} {
			if out, err := runInCgroup(t, m, p, tt.script); err == nil {
				t.Errorf("%s of host %s %d:%d succeeded in the cgroup (output %q)", tt.name, d.name, d.major, d.minor, out)
			}
		}
	}
}

func TestOOMKillCountAndStats(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	m := New()
	p := "/cri-mini-test-" + randName(t)
	const limit = 16 << 20
	if _, err := m.Create(p, &Resources{MemoryLimit: limit, MemorySwapLimit: limit}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Remove(p); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	})
	before, err := m.OOMKillCount(p)
	if err != nil || before != 0 {
		t.Fatalf("OOMKillCount of a new cgroup = %d, %v", before, err)
	}
	if _, err := runInCgroup(t, m, p, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"); err != nil {
		t.Fatalf("busy loop: %v", err)
	}
	st, err := m.Stats(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUsageNanos == 0 || st.MemoryLimit != limit || st.Timestamp.IsZero() {
		t.Errorf("stats after a busy loop: %+v", st)
	}
	// dd touches its whole 64 MiB buffer: four times the limit, no swap to go to.
	out, err := runInCgroup(t, m, p, "dd if=/dev/zero of=/dev/null bs=64M count=1")
	if err == nil {
		t.Fatalf("dd with a 64 MiB buffer in a 16 MiB cgroup succeeded: %s", out)
	}
	after, err := m.OOMKillCount(p)
	if err != nil || after <= before {
		t.Fatalf("OOMKillCount after the OOM = %d (before %d), %v", after, before, err)
	}
}
