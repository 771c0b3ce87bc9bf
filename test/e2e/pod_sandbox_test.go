package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
)

// e2eNet is a test-only bridge network: its own bridge name and a 10.234.x.0/24 subnet, with
// host-local's allocations kept in the test's directory.
type e2eNet struct {
	bridge, subnet, dataDir string
}

func newE2ENet(t *testing.T, dirs daemonDirs) e2eNet {
	t.Helper()
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	n := e2eNet{
		bridge:  fmt.Sprintf("crm-e2e-%02x%02x", b[0], b[1]),
		subnet:  fmt.Sprintf("10.234.%d.0/24", b[0]),
		dataDir: filepath.Join(dirs.base, "ipam"),
	}
	// The bridge plugin never deletes its bridge: the test made it, the test removes it.
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", n.bridge).Run() })
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "crm-e2e",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": n.bridge, "isGateway": true, "ipMasq": true,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": n.dataDir,
					"ranges": [][]map[string]string{{{"subnet": n.subnet}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirs.cniConf, "10-e2e.conflist"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n e2eNet) veths() []string {
	entries, _ := os.ReadDir(filepath.Join("/sys/class/net", n.bridge, "brif"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func (n e2eNet) allocated() []string {
	entries, _ := os.ReadDir(filepath.Join(n.dataDir, "crm-e2e"))
	var out []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func networkReady(t *testing.T, c runtimeapi.RuntimeServiceClient) *runtimeapi.RuntimeCondition {
	t.Helper()
	st, err := c.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range st.Status.Conditions {
		if cond.Type == runtimeapi.NetworkReady {
			return cond
		}
	}
	t.Fatal("no NetworkReady condition")
	return nil
}

// TestPodSandboxSurvivesDaemonKill runs a pod, kills the daemon with SIGKILL, and checks
// that the restarted daemon still knows the pod and can stop and remove it without leaving
// a namespace pin, a veth or an address behind.
func TestPodSandboxSurvivesDaemonKill(t *testing.T) {
	cniBin := cnitest.BinDir(t)
	cnitest.NeedRoot(t)
	dirs := newDaemonDirs(t)
	n := newE2ENet(t, dirs)
	cfgPath := dirs.writeConfig(t, "bin_dirs = [\""+cniBin+"\"]\n")
	ctx := context.Background()

	first := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	if cond := networkReady(t, c); !cond.Status {
		t.Fatalf("NetworkReady false with a conflist in the conf dir: %+v\n%s", cond, first.output.String())
	}
	resp, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "e2e-pod", Namespace: "e2e", Uid: "e2e-uid-1"},
		Hostname: "e2e-pod",
		Labels:   map[string]string{"app": "e2e"},
	}})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, first.output.String())
	}
	id := resp.PodSandboxId
	st, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	_, subnet, _ := net.ParseCIDR(n.subnet)
	ip := st.Status.Network.GetIp()
	if p := net.ParseIP(ip); p == nil || !subnet.Contains(p) {
		t.Fatalf("pod IP %q not in %s", ip, n.subnet)
	}
	var info struct {
		NetNSPath string `json:"netnsPath"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.NetNSPath == "" {
		t.Fatalf("verbose info has no netns path (%v): %s", err, st.Info["info"])
	}
	if _, err := os.Stat(info.NetNSPath); err != nil {
		t.Fatalf("netns pin: %v", err)
	}
	if v := n.veths(); len(v) != 1 {
		t.Fatalf("veths on %s = %v, want 1", n.bridge, v)
	}
	var cgroupSeen bool
	for _, p := range podCgroupDirs(id) {
		if _, err := os.Stat(p); err == nil {
			cgroupSeen = true
		}
	}
	if !cgroupSeen {
		t.Fatalf("no pod cgroup among %v", podCgroupDirs(id))
	}

	// SIGKILL: no shutdown code runs, the pod must live on without the daemon.
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.done <- <-first.done
	if _, err := os.Stat(info.NetNSPath); err != nil {
		t.Fatalf("netns pin gone after the daemon died: %v", err)
	}

	second := startDaemon(t, dirs.socket, "--config", cfgPath)
	c = client(t, dirs.socket)
	// Whatever a failing check below leaves is removed while the daemon still runs.
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	})
	st, err = c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("restarted daemon lost the pod: %v\n%s", err, second.output.String())
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Status.Network.GetIp() != ip {
		t.Fatalf("after restart: state %v ip %q, want READY %s", st.Status.State, st.Status.Network.GetIp(), ip)
	}
	list, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "e2e"}}})
	if err != nil || len(list.Items) != 1 || list.Items[0].Id != id {
		t.Fatalf("list after restart: %v, %v", list.GetItems(), err)
	}
	if cond := networkReady(t, c); !cond.Status {
		t.Fatalf("NetworkReady false after restart: %+v", cond)
	}

	if _, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("stop after restart: %v\n%s", err, second.output.String())
	}
	if v := n.veths(); len(v) != 0 {
		t.Fatalf("veths left after stop: %v", v)
	}
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("remove after restart: %v\n%s", err, second.output.String())
	}
	if _, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); err == nil {
		t.Fatal("status of a removed pod succeeded")
	}
	if _, err := os.Stat(info.NetNSPath); !os.IsNotExist(err) {
		t.Fatalf("netns pin %s left after remove: %v", info.NetNSPath, err)
	}
	if a := n.allocated(); len(a) != 0 {
		t.Fatalf("addresses still allocated: %v", a)
	}
	entries, _ := os.ReadDir(filepath.Join(dirs.state, "sandboxes"))
	if len(entries) != 0 {
		t.Fatalf("sandbox state dirs left: %d", len(entries))
	}
	for _, p := range podCgroupDirs(id) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("pod cgroup %s left: %v", p, err)
		}
	}
}

// podCgroupDirs are where the pod cgroup of a pod without cgroup_parent lives: under the
// daemon's default parent, in the v1 hierarchies and in the v2 unified one.
func podCgroupDirs(id string) []string {
	var dirs []string
	for _, ctl := range []string{"cpu", "memory", "pids", ""} {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ctl, "cri-mini", id))
	}
	return dirs
}
