package spawner

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
)

func TestNewCgroupDirsRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		dirs map[string]string
	}{
		{"none", nil},
		{"outside the cgroup root", map[string]string{"memory": "/tmp/x"}},
		{"escaping the cgroup root", map[string]string{"memory": "/sys/fs/cgroup/../../etc"}},
		{"relative", map[string]string{"memory": "sys/fs/cgroup/memory/x"}},
	} {
		if _, err := newCgroupDirs("/x", tt.dirs); err == nil {
			t.Errorf("%s: accepted %v", tt.name, tt.dirs)
		}
	}
}

func TestCgroupDirsAnswersOnlyItsCgroup(t *testing.T) {
	dirs := map[string]string{"": "/sys/fs/cgroup/x/y", "memory": "/sys/fs/cgroup/memory/x/y"}
	c, err := newCgroupDirs("x/y/", dirs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Dirs("/x/y")
	if err != nil || !maps.Equal(got, dirs) {
		t.Fatalf("Dirs = %v, %v; want %v", got, err, dirs)
	}
	got["memory"] = "changed"
	if again, _ := c.Dirs("/x/y"); again["memory"] != dirs["memory"] {
		t.Fatal("changing the returned map changed the known directories")
	}
	if _, err := c.Dirs("/x/z"); err == nil {
		t.Fatal("Dirs answered for another cgroup")
	}
	if err := c.Remove("/x/y"); err == nil {
		t.Fatal("the monitor's cgroup handle removed a cgroup")
	}
}

// TestCgroupDirsMatchesLibrary: on a real cgroup, with the directories the daemon's
// manager resolves, the monitor's handle sees what the library sees.
func TestCgroupDirsMatchesLibrary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	m := cgroups.New()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := "/cri-mini-test-" + hex.EncodeToString(b)
	const limit = 16 << 20
	if _, err := m.Create(p, &cgroups.Resources{MemoryLimit: limit, MemorySwapLimit: limit}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Remove(p); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	})
	dirs, err := m.Dirs(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newCgroupDirs(p, dirs)
	if err != nil {
		t.Fatal(err)
	}
	if c.IsV2() != m.IsV2() {
		t.Fatalf("IsV2 = %v, the library says %v", c.IsV2(), m.IsV2())
	}
	oomIn(t, m, p)
	want, err := m.OOMKillCount(p)
	if err != nil || want == 0 {
		t.Fatalf("library OOMKillCount = %d, %v; want a kill", want, err)
	}
	if got, err := c.OOMKillCount(p); err != nil || got != want {
		t.Fatalf("OOMKillCount = %d, %v; the library says %d", got, err, want)
	}
}
