package sandbox_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// The main goroutine stays on the main thread, as in cmd/cri-mini: a namespace goroutine
// must never run on the one thread the Go runtime does not destroy.
func init() { runtime.LockOSThread() }

type env struct {
	net      *cnitest.Net
	db       *store.DB
	dbPath   string
	cni      *cni.Network
	cniOpts  cni.Options
	cg       *cgroups.Manager
	opts     sandbox.Options
	m        *sandbox.Manager
	cgParent string
}

// newEnv builds a manager on a test-only bridge network. conf is written to the conf dir
// when not nil; by default the bridge+portmap conflist.
func newEnv(t testing.TB, conf func(n *cnitest.Net) []byte) *env {
	t.Helper()
	cnitest.NeedRoot(t)
	e := &env{net: cnitest.NewNet(t), cg: cgroups.New()}
	if conf == nil {
		conf = func(n *cnitest.Net) []byte { return n.Conf("1.1.0", nil, nil) }
	}
	e.net.WriteConf(t, "10-test.conflist", conf(e.net))
	e.dbPath = filepath.Join(t.TempDir(), "meta.db")
	var err error
	if e.db, err = store.Open(e.dbPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.db.Close() })
	e.cniOpts = cni.Options{ConfDir: e.net.ConfDir, BinDirs: e.net.BinDirs(), CacheDir: t.TempDir()}
	if e.cni, err = cni.New(context.Background(), e.cniOpts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.cni.Close() })
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	e.cgParent = "/crm-test-" + hex.EncodeToString(b)
	t.Cleanup(func() { _ = e.cg.Remove(e.cgParent) })
	e.opts = sandbox.Options{
		StateDir: t.TempDir(), RootDir: t.TempDir(), DB: e.db, CNI: e.cni, Cgroups: e.cg,
		DefaultCgroupParent: e.cgParent, ShmSize: 1 << 20,
	}
	if e.m, err = sandbox.NewManager(context.Background(), e.opts); err != nil {
		t.Fatal(err)
	}
	return e
}

func podConfig(i int, hostPort bool) sandbox.Config {
	c := sandbox.Config{
		Name: fmt.Sprintf("pod-%d", i), Namespace: "test", UID: fmt.Sprintf("uid-%d", i),
		Hostname: fmt.Sprintf("pod-%d", i),
		Labels:   map[string]string{"app": "t"},
		Sysctls:  map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
		DNS:      &sandbox.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"test.svc"}},
		PIDMode:  sandbox.ModeContainer,
	}
	if hostPort {
		c.PortMappings = []sandbox.PortMapping{{Protocol: "TCP", ContainerPort: 80, HostPort: int32(21000 + i)}}
	}
	return c
}

// hostView is what a namespace leak into the test process would change.
type hostView struct {
	netNS    string
	hostname string
	sysctl   string
}

func captureHost(t testing.TB) hostView {
	t.Helper()
	var v hostView
	var err error
	if v.netNS, err = os.Readlink("/proc/self/ns/net"); err != nil {
		t.Fatal(err)
	}
	if v.hostname, err = os.Hostname(); err != nil {
		t.Fatal(err)
	}
	if v.sysctl, err = ns.ReadSysctl("net.ipv4.ip_unprivileged_port_start"); err != nil {
		t.Fatal(err)
	}
	return v
}

func checkHost(t testing.TB, before hostView) {
	t.Helper()
	after := captureHost(t)
	if after != before {
		t.Errorf("host view changed: %+v -> %+v", before, after)
	}
	// A locked namespace goroutine that ended without unlocking leaves its thread to be
	// destroyed by the runtime just after the goroutine's result was sent: give a dying thread
	// up to 2 s to go before calling it a leak.
	var foreign []string
	for i := 0; i < 200; i++ {
		foreign = foreign[:0]
		tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
		for _, p := range tasks {
			if l, err := os.Readlink(p); err == nil && l != before.netNS {
				foreign = append(foreign, p+" is "+l)
			}
		}
		if len(foreign) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("threads outside the host's network namespace %s: %v", before.netNS, foreign)
}

// mountsUnder lists the mount points below dir.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}

// checkClean asserts that nothing of any sandbox is left.
func (e *env) checkClean(t testing.TB, ids []string) {
	t.Helper()
	if got := mountsUnder(t, e.opts.StateDir); len(got) != 0 {
		t.Errorf("mounts left under the state dir: %v", got)
	}
	if got := e.net.AllocatedIPs(t); len(got) != 0 {
		t.Errorf("IPs left in host-local's store: %v", got)
	}
	if got := e.net.Veths(t); len(got) != 0 {
		t.Errorf("veths left on the bridge: %v", got)
	}
	if got := e.net.Rules(t); len(got) != 0 {
		t.Errorf("iptables rules left: %v", got)
	}
	for _, id := range ids {
		if e.cg.Exists(filepath.Join(e.cgParent, id)) {
			t.Errorf("pod cgroup of %s left", id)
		}
		for _, d := range []string{e.opts.StateDir, e.opts.RootDir} {
			if _, err := os.Stat(filepath.Join(d, "sandboxes", id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dir of %s left in %s", id, d)
			}
		}
	}
	if got := e.m.List(); len(got) != 0 {
		t.Errorf("sandboxes still listed: %d", len(got))
	}
}

func TestRunRemoveMany(t *testing.T) {
	e := newEnv(t, nil)
	before := captureHost(t)
	ctx := context.Background()
	const n = 50
	ids := make([]string, n)
	for i := range n {
		sb, err := e.m.Run(ctx, podConfig(i, i%2 == 0))
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		ids[i] = sb.ID
		if sb.State != sandbox.StateReady || len(sb.IPs) != 1 || sb.NetNSPath == "" || sb.ShmPath == "" {
			t.Fatalf("sandbox %d: %+v", i, sb)
		}
	}
	if got := len(e.m.List()); got != n {
		t.Fatalf("List = %d sandboxes, want %d", got, n)
	}
	if got := len(e.net.AllocatedIPs(t)); got != n {
		t.Fatalf("allocated IPs = %d, want %d", got, n)
	}
	if len(e.net.Rules(t)) == 0 {
		t.Fatal("no iptables rule mentions the network: the leak check would prove nothing")
	}
	// Spot-check one pod's namespaces and files.
	sb, err := e.m.Get(ids[3][:12])
	if err != nil {
		t.Fatal(err)
	}
	var hostname, port string
	if err := ns.Do(ns.Paths{Net: sb.NetNSPath, UTS: sb.UTSNSPath}, func() error {
		h, err := os.Hostname()
		hostname = h
		if err != nil {
			return err
		}
		port, err = ns.ReadSysctl("net.ipv4.ip_unprivileged_port_start")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if hostname != "pod-3" || port != "0" {
		t.Errorf("in pod: hostname %q, sysctl %q", hostname, port)
	}
	resolv, _ := os.ReadFile(sb.ResolvConfPath)
	hosts, _ := os.ReadFile(sb.HostsPath)
	if !strings.Contains(string(resolv), "nameserver 10.96.0.10") || !strings.Contains(string(hosts), sb.IPs[0]+"\tpod-3") {
		t.Errorf("resolv.conf %q, hosts %q", resolv, hosts)
	}
	if !e.cg.Exists(sb.CgroupParent) {
		t.Errorf("pod cgroup %s missing", sb.CgroupParent)
	}
	checkHost(t, before)

	for i, id := range ids {
		if err := e.m.Remove(ctx, id); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	if err := e.m.Remove(ctx, ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	e.checkClean(t, ids)
	checkHost(t, before)
}

func TestRunFailsOnCNIAdd(t *testing.T) {
	e := newEnv(t, func(n *cnitest.Net) []byte { return n.Conf("1.0.0", nil, []string{"failer"}) })
	e.net.FailPlugin(t, "failer")
	e.net.SetFail(t, "failer", "add", true)
	before := captureHost(t)
	ctx := context.Background()
	_, err := e.m.Run(ctx, podConfig(1, true))
	if err == nil || !strings.Contains(err.Error(), "injected ADD failure") {
		t.Fatalf("Run err = %v, want the injected failure", err)
	}
	entries, _ := os.ReadDir(filepath.Join(e.opts.StateDir, "sandboxes"))
	if len(entries) != 0 {
		t.Errorf("sandbox dirs left: %v", entries)
	}
	e.checkClean(t, nil)
	// The name was released: the retry succeeds.
	e.net.SetFail(t, "failer", "add", false)
	sb, err := e.m.Run(ctx, podConfig(1, true))
	if err != nil {
		t.Fatalf("retry after failure: %v", err)
	}
	if err := e.m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.checkClean(t, []string{sb.ID})
	checkHost(t, before)
}

func TestStopFailsOnCNIDel(t *testing.T) {
	// The failing plugin runs first on ADD, hence last on DEL: the bridge has released
	// everything by the time it fails, and the retry must still run the whole DEL.
	e := newEnv(t, func(n *cnitest.Net) []byte { return n.Conf("1.0.0", []string{"failer"}, nil) })
	e.net.FailPlugin(t, "failer")
	before := captureHost(t)
	ctx := context.Background()
	sb, err := e.m.Run(ctx, podConfig(2, true))
	if err != nil {
		t.Fatal(err)
	}
	e.net.SetFail(t, "failer", "del", true)
	if err := e.m.Stop(ctx, sb.ID); err == nil || !strings.Contains(err.Error(), "injected DEL failure") {
		t.Fatalf("Stop err = %v, want the injected failure", err)
	}
	got, err := e.m.Get(sb.ID)
	if err != nil || got.State != sandbox.StateNotReady {
		t.Fatalf("after failed Stop: %+v, %v; want NOTREADY", got, err)
	}
	if err := e.m.Remove(ctx, sb.ID); err == nil {
		t.Fatal("Remove succeeded while DEL fails")
	}
	e.net.SetFail(t, "failer", "del", false)
	if err := e.m.Stop(ctx, sb.ID); err != nil {
		t.Fatalf("Stop after the plugin recovered: %v", err)
	}
	if err := e.m.Stop(ctx, sb.ID); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := e.m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.checkClean(t, []string{sb.ID})
	checkHost(t, before)
}

func TestConcurrentRun(t *testing.T) {
	e := newEnv(t, nil)
	before := captureHost(t)
	ctx := context.Background()
	const n = 20
	sbs := make([]*sandbox.Sandbox, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sbs[i], errs[i] = e.m.Run(ctx, podConfig(100+i, i%2 == 0))
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	var ids []string
	for i := range n {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
			continue
		}
		ids = append(ids, sbs[i].ID)
		for _, ip := range sbs[i].IPs {
			if seen[ip] {
				t.Errorf("IP %s given twice", ip)
			}
			seen[ip] = true
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct IPs, want %d", len(seen), n)
	}
	checkHost(t, before)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.m.Remove(ctx, id); err != nil {
				t.Errorf("remove %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	e.checkClean(t, ids)
	checkHost(t, before)
}

func TestDuplicateName(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	sb, err := e.m.Run(ctx, podConfig(7, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Run(ctx, podConfig(7, false)); !errors.Is(err, store.ErrAlreadyExists) || !strings.Contains(err.Error(), sb.ID) {
		t.Fatalf("duplicate Run err = %v, want ErrAlreadyExists naming %s", err, sb.ID)
	}
	next := podConfig(7, false)
	next.Attempt = 1
	sb2, err := e.m.Run(ctx, next)
	if err != nil {
		t.Fatalf("next attempt: %v", err)
	}
	for _, id := range []string{sb.ID, sb2.ID} {
		if err := e.m.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	sb3, err := e.m.Run(ctx, podConfig(7, false))
	if err != nil {
		t.Fatalf("Run after Remove: %v", err)
	}
	if err := e.m.Remove(ctx, sb3.ID); err != nil {
		t.Fatal(err)
	}
	e.checkClean(t, []string{sb.ID, sb2.ID, sb3.ID})
}

func TestHostNamespaces(t *testing.T) {
	e := newEnv(t, nil)
	before := captureHost(t)
	ctx := context.Background()
	c := podConfig(9, true)
	c.NetworkMode, c.IPCMode = sandbox.ModeNode, sandbox.ModeNode
	if _, err := e.m.Run(ctx, c); !errors.Is(err, store.ErrInvalidArgument) || !strings.Contains(err.Error(), "linux.sysctls") {
		t.Fatalf("net sysctl with host network: %v", err)
	}
	c.Sysctls = nil
	sb, err := e.m.Run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if sb.NetNSPath != "" || sb.IPCNSPath != "" || sb.UTSNSPath != "" || sb.ShmPath != "" || len(sb.IPs) != 0 {
		t.Errorf("host-namespace sandbox has pins or IPs: %+v", sb)
	}
	if sb.Hostname != before.hostname {
		t.Errorf("hostname = %q, want the node's %q", sb.Hostname, before.hostname)
	}
	if err := e.m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.checkClean(t, []string{sb.ID})
	checkHost(t, before)
}

func TestUpdateResources(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := podConfig(11, false)
	c.Resources = &sandbox.Resources{MemoryLimit: 256 << 20}
	sb, err := e.m.Run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer e.m.Remove(ctx, sb.ID)
	if err := e.m.UpdateResources(ctx, sb.ID, &sandbox.Resources{MemoryLimit: 128 << 20, CPUShares: 256}); err != nil {
		t.Fatal(err)
	}
	dirs, err := e.cg.Dirs(sb.CgroupParent)
	if err != nil {
		t.Fatal(err)
	}
	file, dir := "memory.limit_in_bytes", dirs["memory"]
	if e.cg.IsV2() {
		file, dir = "memory.max", dirs[""]
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil || strings.TrimSpace(string(b)) != "134217728" {
		t.Errorf("%s = %q, %v", file, b, err)
	}
	got, _ := e.m.Get(sb.ID)
	if got.Config.Resources == nil || got.Config.Resources.MemoryLimit != 128<<20 {
		t.Errorf("recorded resources = %+v", got.Config.Resources)
	}
	if err := e.m.UpdateResources(ctx, sb.ID, &sandbox.Resources{CPUShares: 1}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("invalid resources: %v", err)
	}
}

func TestRecovery(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	sb, err := e.m.Run(ctx, podConfig(20, true))
	if err != nil {
		t.Fatal(err)
	}
	gone, err := e.m.Run(ctx, podConfig(21, true))
	if err != nil {
		t.Fatal(err)
	}
	// A half-created sandbox, as a crash in the middle of Run leaves it: a CREATING record
	// with a live namespace pin.
	crashedID := strings.Repeat("c", 64)
	crashedState := filepath.Join(e.opts.StateDir, "sandboxes", crashedID)
	pins, err := ns.Pin(ns.PinOptions{Dir: filepath.Join(crashedState, "ns"), Kinds: []ns.Kind{ns.Net}})
	if err != nil {
		t.Fatal(err)
	}
	crashed := map[string]any{
		"id": crashedID, "state": "CREATING", "stateDir": crashedState,
		"rootDir":   filepath.Join(e.opts.RootDir, "sandboxes", crashedID),
		"netnsPath": pins[ns.Net], "cgroupParent": filepath.Join(e.cgParent, crashedID),
		"config": map[string]any{"name": "crashed", "namespace": "test", "uid": "c"},
	}
	if err := e.db.Update(func(tx *store.Tx) error { return tx.Put("sandboxes", crashedID, crashed) }); err != nil {
		t.Fatal(err)
	}
	// Simulate a reboot for the second sandbox: a pin disappears. Its IPC pin only: a real
	// reboot also flushes iptables, but the bridge plugin cannot remove its masquerade rules
	// without the network namespace, so losing the net pin without a reboot would leak them.
	if err := ns.Unpin(gone.IPCNSPath); err != nil {
		t.Fatal(err)
	}

	m2, err := sandbox.NewManager(ctx, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m2.Get(sb.ID)
	if err != nil || got.State != sandbox.StateReady || got.IPs[0] != sb.IPs[0] {
		t.Errorf("after restart: %+v, %v; want READY with %v", got, err, sb.IPs)
	}
	if got, err := m2.Get(gone.ID); err != nil || got.State != sandbox.StateNotReady {
		t.Errorf("sandbox without pins after restart: %+v, %v; want NOTREADY", got, err)
	}
	if _, err := m2.Get(crashedID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("half-created sandbox still known: %v", err)
	}
	if ns.IsPinned(pins[ns.Net]) {
		t.Error("half-created sandbox's pin not released")
	}
	if _, err := m2.Run(ctx, podConfig(20, true)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("name reservation not restored: %v", err)
	}
	for _, id := range []string{sb.ID, gone.ID} {
		if err := m2.Remove(ctx, id); err != nil {
			t.Fatalf("remove %s after restart: %v", id, err)
		}
	}
	e.m = m2
	e.checkClean(t, []string{sb.ID, gone.ID, crashedID})
}

func BenchmarkRunStopRemove(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sb, err := e.m.Run(ctx, podConfig(i, true))
		if err != nil {
			b.Fatal(err)
		}
		if err := e.m.Stop(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		if err := e.m.Remove(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func TestStopMarksNotReadyWhenContainersFailToStop(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	fail := true
	opts := e.opts
	opts.Hooks.StopContainers = func(context.Context, string) error {
		if fail {
			return errors.New("injected container stop failure")
		}
		return nil
	}
	m, err := sandbox.NewManager(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := m.Run(ctx, podConfig(7, false))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever fails below, the pod's network and mounts must not outlive the test.
	t.Cleanup(func() { fail = false; _ = m.Remove(ctx, sb.ID) })
	if err := m.Stop(ctx, sb.ID); err == nil || !strings.Contains(err.Error(), "injected container stop failure") {
		t.Fatalf("Stop err = %v, want the hook's failure", err)
	}
	got, err := m.Get(sb.ID)
	if err != nil || got.State != sandbox.StateNotReady {
		t.Fatalf("after a failed Stop: %+v, %v; want NOTREADY", got, err)
	}
	fail = false
	if err := m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.checkClean(t, []string{sb.ID})
}
