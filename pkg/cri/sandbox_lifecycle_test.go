package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// The main goroutine stays on the main thread, as in cmd/cri-mini: a namespace goroutine
// must never run on the one thread the Go runtime never destroys (DESIGN.md section 5).
func init() { runtime.LockOSThread() }

type podEnv struct {
	net *cnitest.Net
	m   *sandbox.Manager
	c   runtimeapi.RuntimeServiceClient
}

// newPodEnv serves a real sandbox manager on a test-only bridge network.
func newPodEnv(t *testing.T) *podEnv {
	t.Helper()
	cnitest.NeedRoot(t)
	e := &podEnv{net: cnitest.NewNet(t)}
	e.net.WriteConf(t, "10-test.conflist", e.net.Conf("1.1.0", nil, nil))
	db, err := store.Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n, err := cni.New(context.Background(), cni.Options{ConfDir: e.net.ConfDir, BinDirs: e.net.BinDirs(), CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cg := cgroups.New()
	cgParent := "/crm-cri-test-" + hex.EncodeToString(b)
	t.Cleanup(func() { _ = cg.Remove(cgParent) })
	e.m, err = sandbox.NewManager(context.Background(), sandbox.Options{
		StateDir: t.TempDir(), RootDir: t.TempDir(), DB: db, CNI: n, Cgroups: cg,
		DefaultCgroupParent: cgParent, ShmSize: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Whatever a failing test leaves behind is removed, so no netns pin or veth leaks.
	t.Cleanup(func() {
		for _, sb := range e.m.List() {
			if err := e.m.Remove(context.Background(), sb.ID); err != nil {
				t.Errorf("cleanup: remove %s: %v", sb.ID, err)
			}
		}
	})
	e.c = dial(t, NewServer(Options{Config: config.Default(), Network: NewNetworkStatus(n), Sandboxes: e.m, PodNetwork: n}))
	return e
}

func (e *podEnv) run(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := e.c.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("run %s: %v", cfg.Metadata.Name, err)
	}
	return resp.PodSandboxId
}

func (e *podEnv) status(t *testing.T, id string, verbose bool) *runtimeapi.PodSandboxStatusResponse {
	t.Helper()
	resp, err := e.c.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: verbose})
	if err != nil {
		t.Fatalf("status %s: %v", id, err)
	}
	return resp
}

func (e *podEnv) listIDs(t *testing.T, f *runtimeapi.PodSandboxFilter) []string {
	t.Helper()
	resp, err := e.c.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range resp.Items {
		ids = append(ids, p.Id)
	}
	return ids
}

func TestPodSandboxLifecycle(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	st, err := e.c.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range st.Status.Conditions {
		if cond.Type == runtimeapi.NetworkReady && !cond.Status {
			t.Fatalf("NetworkReady false with a conflist loaded: %+v", cond)
		}
	}

	start := time.Now()
	webCfg := validPodConfig("web")
	webCfg.Annotations = map[string]string{"note": "hello"}
	webCfg.Labels = map[string]string{"app": "web", "tier": "front"}
	webCfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"cri.svc"}}
	webCfg.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 8080}}
	webCfg.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}}
	web := e.run(t, webCfg)
	dbCfg := validPodConfig("db")
	dbCfg.Labels = map[string]string{"app": "db"}
	db := e.run(t, dbCfg)
	hostCfg := validPodConfig("host")
	hostCfg.Hostname = ""
	hostCfg.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE}}}
	host := e.run(t, hostCfg)

	// kubelet's retry with the same metadata must not create a second pod.
	if _, err := e.c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: validPodConfig("web")}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second run with the same metadata: got %v, want AlreadyExists", err)
	}

	_, subnet, err := net.ParseCIDR(e.net.Subnet)
	if err != nil {
		t.Fatal(err)
	}
	ws := e.status(t, web, true)
	s := ws.Status
	if s.Id != web || s.State != runtimeapi.PodSandboxState_SANDBOX_READY || s.Metadata.GetName() != "web" ||
		s.Metadata.GetUid() != "uid-web" || s.Metadata.GetNamespace() != "cri-test" {
		t.Fatalf("status = %+v", s)
	}
	if ip := net.ParseIP(s.Network.GetIp()); ip == nil || !subnet.Contains(ip) {
		t.Fatalf("pod IP %q not in %s", s.Network.GetIp(), e.net.Subnet)
	}
	if s.Labels["tier"] != "front" || s.Annotations["note"] != "hello" || s.RuntimeHandler != "" {
		t.Fatalf("labels %v annotations %v handler %q", s.Labels, s.Annotations, s.RuntimeHandler)
	}
	if created := time.Unix(0, s.CreatedAt); created.Before(start.Add(-time.Second)) || created.After(time.Now()) {
		t.Fatalf("created_at %v not within the test", created)
	}
	if o := s.Linux.GetNamespaces().GetOptions(); o.GetNetwork() != runtimeapi.NamespaceMode_POD || o.GetIpc() != runtimeapi.NamespaceMode_POD {
		t.Fatalf("namespace options = %+v", o)
	}
	var info struct {
		Pid         *int                         `json:"pid"`
		NetNSPath   string                       `json:"netnsPath"`
		Config      *runtimeapi.PodSandboxConfig `json:"config"`
		RuntimeSpec struct {
			Hostname string `json:"hostname"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(ws.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info: %v\n%s", err, ws.Info["info"])
	}
	if info.Pid == nil || *info.Pid != 0 || info.RuntimeSpec.Hostname != "web" || info.Config.GetMetadata().GetName() != "web" ||
		len(info.Config.GetPortMappings()) != 1 {
		t.Fatalf("verbose info = %s", ws.Info["info"])
	}
	if _, err := os.Stat(info.NetNSPath); err != nil {
		t.Fatalf("netns pin from verbose info: %v", err)
	}
	if len(e.net.Veths(t)) != 2 {
		t.Fatalf("veths on the bridge = %v, want 2", e.net.Veths(t))
	}

	hs := e.status(t, host, false).Status
	if hs.Network.GetIp() != "" || hs.Linux.GetNamespaces().GetOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE ||
		hs.Linux.GetNamespaces().GetOptions().GetPid() != runtimeapi.NamespaceMode_NODE {
		t.Fatalf("host-network pod status = %+v", hs)
	}

	// Update resources on a ready pod; refused once it is stopped.
	mem := int64(256 << 20)
	if _, err := e.c.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: web,
		Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: mem, CpuShares: 256}}); err != nil {
		t.Fatalf("update resources: %v", err)
	}
	if sb, err := e.m.Get(web); err != nil || sb.Config.Resources == nil || sb.Config.Resources.MemoryLimit != mem {
		t.Fatalf("resources after update: %+v, %v", sb, err)
	}

	for range 2 { // idempotent
		if _, err := e.c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: db}); err != nil {
			t.Fatalf("stop: %v", err)
		}
	}
	if st := e.status(t, db, false).Status.State; st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("stopped pod state = %v", st)
	}
	if _, err := e.c.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: db,
		Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: mem}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("update resources of a stopped pod: got %v, want FailedPrecondition", err)
	}

	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	for _, tt := range []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"prefix", &runtimeapi.PodSandboxFilter{Id: web[:12]}, []string{web}},
		{"full id", &runtimeapi.PodSandboxFilter{Id: db}, []string{db}},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{web, host}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{db}},
		{"labels", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web", "tier": "front"}}, []string{web}},
		{"label mismatch", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}, State: ready}, nil},
	} {
		got := e.listIDs(t, tt.filter)
		slices.Sort(got)
		slices.Sort(tt.want)
		if !slices.Equal(got, tt.want) {
			t.Errorf("list %s = %v, want %v", tt.name, got, tt.want)
		}
	}

	// Remove of a READY pod stops it first; every remove is idempotent.
	for _, id := range []string{web, db, host, web, db} {
		if _, err := e.c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	if ids := e.listIDs(t, nil); len(ids) != 0 {
		t.Fatalf("sandboxes left: %v", ids)
	}
	if _, err := os.Stat(info.NetNSPath); !os.IsNotExist(err) {
		t.Fatalf("netns pin %s still there: %v", info.NetNSPath, err)
	}
	if v := e.net.Veths(t); len(v) != 0 {
		t.Fatalf("veths left on the bridge: %v", v)
	}
	if ips := e.net.AllocatedIPs(t); len(ips) != 0 {
		t.Fatalf("addresses still allocated: %v", ips)
	}
}
