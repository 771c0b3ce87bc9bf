package cgroups

import (
	"errors"
	"maps"
	"os"
	"testing"
)

func TestWithDirsRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		m    *Manager
		p    string
		dirs map[string]string
	}{
		{"bad path", &Manager{}, "/a/../..", map[string]string{"memory": "/x"}},
		{"no dirs", &Manager{}, "/a", nil},
		{"v2 without unified dir", &Manager{v2: true}, "/a", map[string]string{"memory": "/x"}},
	} {
		if _, err := tt.m.WithDirs(tt.p, tt.dirs); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("%s: err = %v, want ErrInvalidPath", tt.name, err)
		}
	}
}

func TestWithDirsAnswersOnlyItsCgroup(t *testing.T) {
	m := &Manager{}
	dirs := map[string]string{"memory": "/sys/fs/cgroup/memory/x/y", "cpu": "/sys/fs/cgroup/cpu/x/y"}
	pm, err := m.WithDirs("x/y/", dirs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pm.Dirs("/x/y")
	if err != nil || !maps.Equal(got, dirs) {
		t.Fatalf("Dirs = %v, %v; want %v", got, err, dirs)
	}
	got["memory"] = "changed"
	if again, _ := pm.Dirs("/x/y"); again["memory"] != dirs["memory"] {
		t.Fatal("a caller changing the returned map changed the pinned directories")
	}
	if m.pinned("/x/y") != nil || pm.pinned("/x/z") != nil {
		t.Fatal("the pin leaked to the original manager or to another path")
	}
}

// TestWithDirsMatchesLibrary: on a real cgroup, the pinned manager gives what the library
// gives, for the directories and the OOM kill counter.
func TestWithDirsMatchesLibrary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	m := New()
	p := "/" + randName(t)
	t.Cleanup(func() { _ = m.Remove(p) })
	if _, err := m.Create(p, &Resources{MemoryLimit: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	dirs, err := m.Dirs(p)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := m.WithDirs(p, dirs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.OOMKillCount(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pm.OOMKillCount(p); err != nil || got != want {
		t.Fatalf("pinned OOMKillCount = %d, %v; library says %d", got, err, want)
	}
	if got, err := pm.Dirs(p); err != nil || !maps.Equal(got, dirs) {
		t.Fatalf("pinned Dirs = %v, %v; want %v", got, err, dirs)
	}
}
