package container

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
)

func TestCPURate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name     string
		at       time.Time
		usage    uint64
		since    time.Time
		want     uint64
		wantKnow bool
	}{
		// First sample: the average since the start, half a core over 2s.
		{"first since start", t0, 1e9, t0.Add(-2 * time.Second), 5e8, true},
		// One core for one second.
		{"second", t0.Add(time.Second), 2e9, time.Time{}, 1e9, true},
		{"same instant", t0.Add(time.Second), 3e9, time.Time{}, 0, false},
		{"counter went back", t0.Add(2 * time.Second), 1, time.Time{}, 0, false},
	}
	var s statsState
	for _, tt := range tests {
		got, known := s.cpuRate("/pod/c", tt.at, tt.usage, tt.since)
		if got != tt.want || known != tt.wantKnow {
			t.Errorf("%s: rate %d known %v, want %d %v", tt.name, got, known, tt.want, tt.wantKnow)
		}
	}
	if _, known := s.cpuRate("/pod/other", t0, 5, time.Time{}); known {
		t.Error("a first sample without a start time has no rate")
	}
	s.forget("/pod/c")
	if _, ok := s.cpu["/pod/c"]; ok {
		t.Error("forget kept the sample")
	}
}

func TestParseNetDev(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    2048      10    3    0    0     0          0         0     4096      20    4    0    0     0       0          0
`
	f := filepath.Join(t.TempDir(), "dev")
	if err := os.WriteFile(f, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := parseNetDev(r)
	want := []InterfaceStats{{Name: "eth0", RxBytes: 2048, RxErrors: 3, TxBytes: 4096, TxErrors: 4}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
}

func TestMergeResources(t *testing.T) {
	cur := &cgroups.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20,
		Unified: map[string]string{"memory.high": "1M"}, Devices: cgroups.DefaultDeviceRules()}
	got := mergeResources(cur, &cgroups.Resources{MemoryLimit: 96 << 20, CpusetCPUs: "0", Unified: map[string]string{"pids.max": "10"}})
	want := &cgroups.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 96 << 20, CpusetCPUs: "0",
		Unified: map[string]string{"memory.high": "1M", "pids.max": "10"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if len(cur.Unified) != 1 {
		t.Error("merge changed the current resources")
	}
	if got := mergeResources(nil, &cgroups.Resources{CPUShares: 2}); got.CPUShares != 2 {
		t.Errorf("merge into nothing: %+v", got)
	}
}

func TestCgroupResourcesDevices(t *testing.T) {
	major, minor := int64(10), int64(200)
	spec := &specs.Spec{Linux: &specs.Linux{
		Devices:   []specs.LinuxDevice{{Path: "/dev/net/tun", Type: "c", Major: major, Minor: minor}},
		Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "r"}}},
	}}
	r := cgroupResources(Config{Resources: &cgroups.Resources{MemoryLimit: 1 << 20}}, spec)
	def := cgroups.DefaultDeviceRules()
	if r.MemoryLimit != 1<<20 || len(r.Devices) != len(def)+2 {
		t.Fatalf("resources %+v", r)
	}
	if first := r.Devices[0]; first.Allow || first.Type != "a" {
		t.Errorf("first rule %+v is not deny-all", first)
	}
	if req, mk := r.Devices[len(def)], r.Devices[len(def)+1]; req.Access != "r" || mk.Access != "m" || *mk.Major != major {
		t.Errorf("request rules %+v %+v", req, mk)
	}
}

func TestApplyResourcesToSpecClampsOOMScoreAdj(t *testing.T) {
	tests := []struct{ req, floor, want int }{{-999, 0, 0}, {500, 0, 500}, {-500, -1000, -500}, {-100, -200, -100}}
	for _, tt := range tests {
		spec := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
		req := tt.req
		applyResourcesToSpec(spec, Config{OOMScoreAdj: &req, Resources: &cgroups.Resources{MemoryLimit: 5}}, tt.floor)
		if spec.Process.OOMScoreAdj == nil || *spec.Process.OOMScoreAdj != tt.want {
			t.Errorf("request %d floor %d: got %v, want %d", tt.req, tt.floor, spec.Process.OOMScoreAdj, tt.want)
		}
		if *spec.Linux.Resources.Memory.Limit != 5 {
			t.Errorf("memory limit not in the spec")
		}
	}
}

func TestLayerCache(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), []byte(strings.Repeat("x", 10000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a", "f"), filepath.Join(dir, "a", "b", "g")); err != nil {
		t.Fatal(err)
	}
	var lc layerCache
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); wg.Wait() }()
	u := lc.get(ctx, "c1", dir, &wg)
	for i := 0; u == nil && i < 50; i++ { // get never waits: poll until the walk it started is done
		time.Sleep(20 * time.Millisecond)
		u = lc.get(ctx, "c1", dir, &wg)
	}
	if u == nil {
		t.Fatal("no usage after 1s")
	}
	// dir, a, a/b and one inode for the two links of f.
	if u.InodesUsed != 4 || u.UsedBytes < 10000 || u.Mountpoint == "" {
		t.Errorf("usage %+v", u)
	}
	lc.forget("c1")
	if len(lc.entries) != 0 {
		t.Error("forget kept the entry")
	}
	if _, err := walkUsage(ctx, filepath.Join(dir, "missing")); err != nil {
		t.Errorf("walk of a missing dir: %v", err)
	}
}
