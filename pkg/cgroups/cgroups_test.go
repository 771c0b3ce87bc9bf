package cgroups

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"/kubepods/burstable/pod1", "/kubepods/burstable/pod1", false},
		{"kubepods/pod1/", "/kubepods/pod1", false},
		{"/a//b", "/a/b", false},
		{"", "", true},
		{"/", "", true},
		{"/a/../../etc", "", true},
		{"kubepods-burstable.slice", "", true},
		{"/a\nb", "", true},
	}
	for _, tt := range tests {
		got, err := CleanPath(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrInvalidPath) {
			t.Errorf("CleanPath(%q) error %v does not wrap ErrInvalidPath", tt.in, err)
		}
	}
}

func TestResourcesValidate(t *testing.T) {
	tests := []struct {
		name    string
		r       *Resources
		wantErr bool
	}{
		{"nil", nil, false},
		{"zero", &Resources{}, false},
		{"ok", &Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20}, false},
		{"shares too low", &Resources{CPUShares: 1}, true},
		{"quota too low", &Resources{CPUQuota: 10}, true},
		{"negative memory", &Resources{MemoryLimit: -1}, true},
		{"period too high", &Resources{CPUPeriod: 2000000}, true},
	}
	for _, tt := range tests {
		if err := tt.r.Validate(); (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", tt.name, err, tt.wantErr)
		}
	}
}

func randName(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "crm-test-" + hex.EncodeToString(b)
}

func readFirst(t *testing.T, dirs map[string]string, controller, file string) string {
	t.Helper()
	dir, ok := dirs[controller]
	if !ok {
		dir = dirs[""]
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("read %s/%s: %v", dir, file, err)
	}
	return strings.TrimSpace(string(b))
}

func TestCreateUpdateRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	m := New()
	root := "/" + randName(t)
	p := root + "/pod-a"
	t.Cleanup(func() { _ = m.Remove(root) })

	created, err := m.Create(p, &Resources{CPUShares: 512, MemoryLimit: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !created || !m.Exists(p) {
		t.Fatalf("created = %v, exists = %v", created, m.Exists(p))
	}
	again, err := m.Create(p, nil)
	if err != nil || again {
		t.Fatalf("second Create: created = %v, err = %v; want false, nil", again, err)
	}
	dirs, err := m.Dirs(p)
	if err != nil {
		t.Fatal(err)
	}
	memFile, cpuFile, want := "memory.limit_in_bytes", "cpu.shares", "512"
	if m.IsV2() {
		// Shares map to weight the way runc 1.3+ and the kubelet do: 1024 shares (one CPU)
		// is weight 100, and 512 shares is ceil(10^((9²+125·9)/612 - 7/34)) = 59.
		memFile, cpuFile, want = "memory.max", "cpu.weight", "59"
	}
	if got := readFirst(t, dirs, "memory", memFile); got != "134217728" {
		t.Errorf("%s = %s", memFile, got)
	}
	if got := readFirst(t, dirs, "cpu", cpuFile); got != want {
		t.Errorf("%s = %s, want %s", cpuFile, got, want)
	}

	if err := m.Update(p, &Resources{CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 256 << 20}); err != nil {
		t.Fatal(err)
	}
	if got := readFirst(t, dirs, "memory", memFile); got != "268435456" {
		t.Errorf("after update %s = %s", memFile, got)
	}
	if m.IsV2() {
		if got := readFirst(t, dirs, "cpu", "cpu.max"); got != "50000 100000" {
			t.Errorf("cpu.max = %s", got)
		}
	} else if got := readFirst(t, dirs, "cpu", "cpu.cfs_quota_us"); got != "50000" {
		t.Errorf("cpu.cfs_quota_us = %s", got)
	}
	if _, err := m.Stats(p); err != nil {
		t.Errorf("stats: %v", err)
	}
	if err := m.Update(root+"/missing", &Resources{MemoryLimit: 1 << 20}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("update of a missing cgroup: %v", err)
	}

	if err := m.Remove(root); err != nil {
		t.Fatal(err)
	}
	if m.Exists(p) || m.Exists(root) {
		t.Error("cgroup still exists after Remove")
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists: %v", d, err)
		}
	}
	if err := m.Remove(root); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestAddProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	m := New()
	p := "/cri-mini-test-" + randName(t)
	if _, err := m.Create(p, &Resources{MemoryLimit: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := m.Remove(p); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	})
	if err := m.AddProcess(p, cmd.Process.Pid); err != nil {
		t.Fatalf("AddProcess: %v", err)
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), ":"+p+"\n") {
		t.Fatalf("process is not in %s:\n%s", p, data)
	}
	if err := m.AddProcess("/cri-mini-test-missing-"+randName(t), cmd.Process.Pid); err == nil {
		t.Fatal("AddProcess to a cgroup that does not exist succeeded")
	}
}

// TestCreateDirs: the directories CreateDirs returns are Dirs', and created says whether
// this call made the cgroup.
func TestCreateDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	m := New()
	p := "/" + randName(t)
	t.Cleanup(func() { _ = m.Remove(p) })
	dirs, created, err := m.CreateDirs(p, &Resources{PidsLimit: 64})
	if err != nil || !created {
		t.Fatalf("CreateDirs = %v, %v; want created", created, err)
	}
	want, err := m.Dirs(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != len(want) {
		t.Fatalf("CreateDirs dirs %v, Dirs %v", dirs, want)
	}
	for k, d := range want {
		if dirs[k] != d {
			t.Fatalf("CreateDirs dirs %v, Dirs %v", dirs, want)
		}
	}
	if got := readFirst(t, dirs, "pids", "pids.max"); got != "64" {
		t.Errorf("pids.max = %q, want 64", got)
	}
	if _, again, err := m.CreateDirs(p, nil); err != nil || again {
		t.Fatalf("second CreateDirs: created = %v, err = %v; want false, nil", again, err)
	}
}

// TestTryRemove: a cgroup with a process is reported busy (ErrBusy) and kept, in every
// hierarchy; once the process is gone it is removed; a missing cgroup is fine.
func TestTryRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	m := New()
	p := "/cri-mini-test-" + randName(t)
	if _, err := m.Create(p, &Resources{MemoryLimit: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Remove(p) })
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := m.AddProcess(p, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := m.TryRemove(p); !errors.Is(err, ErrBusy) {
		t.Fatalf("TryRemove of a cgroup with a process: %v, want ErrBusy", err)
	}
	if !m.Exists(p) {
		t.Fatal("a busy cgroup was removed")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	var err error
	for i := 0; i < 100; i++ { // the kernel lists an exited process for a moment
		if err = m.TryRemove(p); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || m.Exists(p) {
		t.Fatalf("TryRemove after the process ended: %v, exists %v", err, m.Exists(p))
	}
	if err := m.TryRemove(p); err != nil {
		t.Errorf("TryRemove of a missing cgroup: %v", err)
	}
}
