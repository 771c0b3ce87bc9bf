package cni_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
	"github.com/cri-mini/cri-mini/pkg/ns"
)

// Keep the main goroutine on the main thread (as cmd/cri-mini does) so no namespace work
// can ever run there.
func init() { runtime.LockOSThread() }

func newNetwork(t *testing.T, confDir string, bins []string) *cni.Network {
	t.Helper()
	n, err := cni.New(context.Background(), cni.Options{ConfDir: confDir, BinDirs: bins, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func TestLoadFirstValid(t *testing.T) {
	const good = `{"cniVersion":"1.0.0","name":"%s","plugins":[{"type":"bridge"}]}`
	conf := func(name string) string { return strings.Replace(good, "%s", name, 1) }
	tests := []struct {
		name  string
		files map[string]string
		want  string // network name, "" = not ready
	}{
		{"empty dir", nil, ""},
		{"first by name", map[string]string{"20-b.conflist": conf("b"), "10-a.conflist": conf("a")}, "a"},
		{"skips invalid", map[string]string{"10-a.conflist": "{not json", "20-b.conflist": conf("b")}, "b"},
		{"skips empty list", map[string]string{"10-a.conflist": `{"cniVersion":"1.0.0","name":"a","plugins":[]}`, "20-b.conflist": conf("b")}, "b"},
		{"single conf upconverted", map[string]string{"10-c.conf": `{"cniVersion":"1.0.0","name":"c","type":"bridge"}`}, "c"},
		{"json accepted", map[string]string{"10-d.json": `{"cniVersion":"1.0.0","name":"d","type":"bridge"}`}, "d"},
		{"other extensions ignored", map[string]string{"10-a.txt": conf("a")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for f, c := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			n := newNetwork(t, dir, []string{t.TempDir()})
			if got := n.Name(); got != tt.want {
				t.Errorf("network = %q, want %q", got, tt.want)
			}
			ready, reason := n.Status(context.Background())
			if tt.want == "" {
				if ready || !strings.Contains(reason, "network config found in "+dir) {
					t.Errorf("Status = %v, %q; want not ready naming %s", ready, reason, dir)
				}
			} else if !ready {
				t.Errorf("Status not ready: %s", reason)
			}
		})
	}
}

// waitFor polls cond for at most 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWatchConfDir(t *testing.T) {
	dir := t.TempDir()
	n := newNetwork(t, dir, []string{t.TempDir()})
	if ready, reason := n.Status(context.Background()); ready || reason != "no network config found in "+dir+": network not ready" {
		t.Fatalf("Status = %v, %q", ready, reason)
	}
	tmp := filepath.Join(dir, ".tmp")
	if err := os.WriteFile(tmp, []byte(`{"cniVersion":"1.0.0","name":"late","plugins":[{"type":"bridge"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "10-late.conflist")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new config to load", func() bool { return n.Name() == "late" })
	if err := os.Remove(filepath.Join(dir, "10-late.conflist")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the config removal", func() bool { ready, _ := n.Status(context.Background()); return !ready })
}

func TestPodCIDR(t *testing.T) {
	n := newNetwork(t, t.TempDir(), []string{t.TempDir()})
	n.SetPodCIDR("10.1.0.0/24")
	if got := n.PodCIDR(); got != "10.1.0.0/24" {
		t.Errorf("PodCIDR = %q", got)
	}
}

func pinNet(t *testing.T) string {
	t.Helper()
	pins, err := ns.Pin(ns.PinOptions{Dir: t.TempDir(), Kinds: []ns.Kind{ns.Net}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Unpin(pins[ns.Net]) })
	return pins[ns.Net]
}

func TestSetupTeardownGC(t *testing.T) {
	cnitest.NeedRoot(t)
	tn := cnitest.NewNet(t)
	tn.WriteConf(t, "10-test.conflist", tn.Conf("1.1.0", nil, nil))
	cacheDir := t.TempDir()
	opts := cni.Options{ConfDir: tn.ConfDir, BinDirs: tn.BinDirs(), CacheDir: cacheDir}
	n, err := cni.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if ready, reason := n.Status(context.Background()); !ready {
		t.Fatalf("not ready: %s", reason)
	}
	ctx := context.Background()
	pods := []cni.Pod{
		{ID: "pod-a-0123456789", NetNS: pinNet(t), Name: "a", Namespace: "ns", UID: "u1",
			PortMappings: []cni.PortMapping{{Protocol: "TCP", ContainerPort: 80, HostPort: 18080}}},
		{ID: "pod-b-0123456789", NetNS: pinNet(t), Name: "b", Namespace: "ns", UID: "u2"},
	}
	for _, p := range pods {
		res, err := n.Setup(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.IPs) != 1 || !strings.HasPrefix(res.IPs[0], strings.TrimSuffix(tn.Subnet, "0/24")) {
			t.Errorf("IPs = %v, want one in %s", res.IPs, tn.Subnet)
		}
	}
	if got := len(tn.AllocatedIPs(t)); got != 2 {
		t.Fatalf("allocated IPs = %d, want 2", got)
	}
	if len(tn.Rules(t)) == 0 {
		t.Fatal("no iptables rule mentions the network: the leak checks below would prove nothing")
	}

	// A restarted daemon (new Network, same cache) whose config is gone still tears down
	// from the cache.
	n.Close()
	if err := os.Remove(filepath.Join(tn.ConfDir, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	n2, err := cni.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if err := n2.Teardown(ctx, pods[0]); err != nil {
		t.Fatal(err)
	}
	if err := n2.Teardown(ctx, pods[0]); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
	if got := tn.AllocatedIPs(t); len(got) != 1 {
		t.Fatalf("allocated IPs after teardown = %v, want 1", got)
	}
	// GC with no valid sandbox releases the other attachment.
	tn.WriteConf(t, "10-test.conflist", tn.Conf("1.1.0", nil, nil))
	n2.Reload(ctx)
	if err := n2.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := tn.AllocatedIPs(t); len(got) != 0 {
		t.Errorf("allocated IPs after GC = %v", got)
	}
	if got := tn.Veths(t); len(got) != 0 {
		t.Errorf("veths after GC = %v", got)
	}
	if got := tn.Rules(t); len(got) != 0 {
		t.Errorf("iptables rules after GC = %v", got)
	}
}

func TestSetupFailureUndoes(t *testing.T) {
	cnitest.NeedRoot(t)
	tn := cnitest.NewNet(t)
	tn.FailPlugin(t, "failer")
	tn.SetFail(t, "failer", "add", true)
	tn.WriteConf(t, "10-test.conflist", tn.Conf("1.0.0", nil, []string{"failer"}))
	n := newNetwork(t, tn.ConfDir, tn.BinDirs())
	_, err := n.Setup(context.Background(), cni.Pod{ID: "pod-fail-0123", NetNS: pinNet(t), Name: "f", Namespace: "ns", UID: "u",
		PortMappings: []cni.PortMapping{{Protocol: "udp", ContainerPort: 53, HostPort: 10053}}})
	if err == nil || !strings.Contains(err.Error(), "injected ADD failure") {
		t.Fatalf("Setup err = %v, want the injected failure", err)
	}
	if got := tn.AllocatedIPs(t); len(got) != 0 {
		t.Errorf("allocated IPs after failed ADD = %v", got)
	}
	if got := tn.Veths(t); len(got) != 0 {
		t.Errorf("veths after failed ADD = %v", got)
	}
	if got := tn.Rules(t); len(got) != 0 {
		t.Errorf("iptables rules after failed ADD = %v", got)
	}
}

// statusPlugin writes a plugin that logs every invocation to a file and answers STATUS with
// success, or with a CNI error when the file "<bin>/down" exists.
func statusPlugin(t *testing.T) (binDir, calls string) {
	t.Helper()
	binDir = t.TempDir()
	calls = filepath.Join(binDir, "calls")
	script := `#!/bin/sh
echo "$CNI_COMMAND" >> ` + calls + `
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
STATUS)
	if [ -e ` + filepath.Join(binDir, "down") + ` ]; then
		echo '{"cniVersion":"1.1.0","code":50,"msg":"plugin is down"}'
		exit 1
	fi ;;
esac
`
	if err := os.WriteFile(filepath.Join(binDir, "statusprobe"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binDir, calls
}

func TestStatusAnswersFromTheLastVerdict(t *testing.T) {
	bin, calls := statusPlugin(t)
	dir := t.TempDir()
	conf := `{"cniVersion":"1.1.0","name":"probe","plugins":[{"type":"statusprobe"}]}`
	if err := os.WriteFile(filepath.Join(dir, "10-probe.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := cni.New(context.Background(), cni.Options{ConfDir: dir, BinDirs: []string{bin}, CacheDir: t.TempDir(), StatusInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if ready, reason := n.Status(context.Background()); !ready {
		t.Fatalf("not ready after load: %s", reason)
	}
	before, _ := os.ReadFile(calls)
	if !strings.Contains(string(before), "STATUS") {
		t.Fatalf("the plugins' STATUS was never checked; calls:\n%s", before)
	}
	for i := 0; i < 20; i++ {
		n.Status(context.Background())
	}
	after, _ := os.ReadFile(calls)
	if string(after) != string(before) {
		t.Fatalf("Status ran plugins: calls went from\n%s\nto\n%s", before, after)
	}

	// A plugin that reports itself down shows at the next check (here: a reload).
	if err := os.WriteFile(filepath.Join(bin, "down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n.Reload(context.Background())
	if ready, reason := n.Status(context.Background()); ready || !strings.Contains(reason, "plugin is down") {
		t.Fatalf("Status = %v, %q; want not ready naming the plugin's message", ready, reason)
	}
}

// TestTeardownOutlivesTheCaller: a DEL is not killed when the caller's context ends (kubelet
// giving up on StopPodSandbox): a plugin stopped half way can leave rules no retry finds.
func TestTeardownOutlivesTheCaller(t *testing.T) {
	bin := t.TempDir()
	done := filepath.Join(bin, "del-done")
	script := `#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
DEL) sleep 0.5; echo done > ` + done + ` ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "slowdel"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := `{"cniVersion":"1.1.0","name":"slow","plugins":[{"type":"slowdel"}]}`
	if err := os.WriteFile(filepath.Join(dir, "10-slow.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := cni.New(context.Background(), cni.Options{ConfDir: dir, BinDirs: []string{bin}, CacheDir: t.TempDir(), StatusInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Teardown(ctx, cni.Pod{ID: "pod-slow-0123", NetNS: "/proc/self/ns/net", Name: "s", Namespace: "ns", UID: "u"}); err != nil {
		t.Fatalf("Teardown = %v", err)
	}
	if _, err := os.Stat(done); err != nil {
		t.Fatalf("the plugin's DEL did not run to its end: %v", err)
	}
}
