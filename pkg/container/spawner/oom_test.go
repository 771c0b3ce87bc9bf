package spawner

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
)

// ooms runs a process that needs four times the cgroup's memory limit in the cgroup.
func oomIn(t *testing.T, m *cgroups.Manager, p string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read x; exec dd if=/dev/zero of=/dev/null bs=64M count=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.AddProcess(p, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal(err)
	}
	_, _ = in.Write([]byte("go\n"))
	_ = in.Close()
	if err := cmd.Wait(); err == nil {
		t.Fatal("the allocation succeeded despite the limit")
	}
}

// TestOOMBaselineIgnoresEarlierKills: a kill before the baseline (an earlier run, a
// cumulative counter) is not this run's; one after it is.
func TestOOMBaselineIgnoresEarlierKills(t *testing.T) {
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
	oomIn(t, m, p)
	base := newOOMBaseline(m, p)
	if !base.ok {
		t.Fatal("no baseline read")
	}
	if base.killedSince() {
		t.Fatal("a kill before the baseline was attributed to this run")
	}
	oomIn(t, m, p)
	if !base.killedSince() {
		t.Fatal("a kill after the baseline was not seen")
	}
	if (oomBaseline{}).killedSince() || newOOMBaseline(m, "").killedSince() {
		t.Error("a baseline without a cgroup reported a kill")
	}
}
