package cri

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// newIdleManager returns a real manager without a network; Run fails before any side effect
// on invalid input, and Stop/Remove/Status of unknown IDs touch nothing, so no root is needed.
func newIdleManager(t *testing.T) *sandbox.Manager {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := sandbox.NewManager(context.Background(), sandbox.Options{StateDir: t.TempDir(), RootDir: t.TempDir(), DB: db})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func validPodConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "cri-test", Uid: "uid-" + name},
		Hostname: name,
		Labels:   map[string]string{"app": "cri-test"},
	}
}

func TestRunPodSandboxValidation(t *testing.T) {
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: newIdleManager(t)}))
	tests := []struct {
		name     string
		mutate   func(r *runtimeapi.RunPodSandboxRequest)
		code     codes.Code
		wantText string
	}{
		{"no config", func(r *runtimeapi.RunPodSandboxRequest) { r.Config = nil }, codes.InvalidArgument, "config: required"},
		{"no metadata", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Metadata = nil }, codes.InvalidArgument, "config.metadata: required"},
		{"no name", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Metadata.Name = "" }, codes.InvalidArgument, "config.metadata.name"},
		{"no namespace", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Metadata.Namespace = "" }, codes.InvalidArgument, "config.metadata.namespace"},
		{"no uid", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Metadata.Uid = "" }, codes.InvalidArgument, "config.metadata.uid"},
		{"slash in name", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Metadata.Name = "a/b" }, codes.InvalidArgument, "config.metadata.name"},
		{"bad hostname", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Hostname = "-bad-" }, codes.InvalidArgument, "config.hostname"},
		{"host sysctl", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"vm.swappiness": "1"}}
		}, codes.InvalidArgument, "config.linux.sysctls"},
		{"bad dns server", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"dns.example"}}
		}, codes.InvalidArgument, "config.dns_config.servers"},
		{"bad container port", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 70000}}
		}, codes.InvalidArgument, "config.port_mappings[0].container_port"},
		{"target network", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_TARGET}}}
		}, codes.InvalidArgument, "config.linux.security_context.namespace_options.network"},
		{"pod user namespace", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{
					Mode: runtimeapi.NamespaceMode_POD,
					Uids: []*runtimeapi.IDMapping{{HostId: 65536, Length: 65536}},
					Gids: []*runtimeapi.IDMapping{{HostId: 65536, Length: 65536}},
				}}}}
		}, codes.InvalidArgument, "config.linux.security_context.namespace_options.userns_options.mode"},
		{"pod user namespace without mappings", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}}}
		}, codes.InvalidArgument, "config.linux.security_context.namespace_options.userns_options.uids"},
		{"negative cpu shares", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: -2}}
		}, codes.InvalidArgument, "config.linux.resources"},
		{"bad cgroup parent", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "kubepods.slice"}
		}, codes.InvalidArgument, "config.linux.cgroup_parent"},
		{"unknown runtime handler", func(r *runtimeapi.RunPodSandboxRequest) { r.RuntimeHandler = "runc" }, codes.NotFound, "runtime_handler \"runc\""},
		// Valid, but no CNI network is configured: refused before anything is created.
		{"pod network without cni", func(r *runtimeapi.RunPodSandboxRequest) {}, codes.FailedPrecondition, "no CNI network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &runtimeapi.RunPodSandboxRequest{Config: validPodConfig("valid")}
			tt.mutate(req)
			_, err := c.RunPodSandbox(context.Background(), req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.wantText) {
				t.Fatalf("got %v, want %v naming %q", err, tt.code, tt.wantText)
			}
		})
	}
	resp, err := c.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 0 {
		t.Fatalf("failed runs left sandboxes: %v, %v", resp.GetItems(), err)
	}
}

func TestStopRemoveUnknownSandboxIsOK(t *testing.T) {
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: newIdleManager(t)}))
	ctx := context.Background()
	for _, id := range []string{"0123456789abcdef", "8b1c6d2e-6f0a-4a56-9d51-2f7f6f6d7f10"} {
		if _, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("stop unknown %s: %v", id, err)
		}
		if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("remove unknown %s: %v", id, err)
		}
		_, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		if status.Code(err) != codes.NotFound {
			t.Errorf("status of unknown %s: got %v, want NotFound", id, err)
		}
		_, err = c.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: id})
		if status.Code(err) != codes.NotFound {
			t.Errorf("update resources of unknown %s: got %v, want NotFound", id, err)
		}
	}
	for name, call := range map[string]func() error{
		"stop":   func() error { _, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{}); return err },
		"remove": func() error { _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{}); return err },
		"status": func() error { _, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{}); return err },
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "pod_sandbox_id") {
			t.Errorf("%s with empty ID: got %v, want InvalidArgument naming pod_sandbox_id", name, err)
		}
	}
}

// listedManager serves List/Get over fixed sandboxes, to test the filters and the stream's
// batching without creating real pods. The other methods are not used by those RPCs.
type listedManager struct {
	SandboxManager
	items []*sandbox.Sandbox
}

func (l listedManager) List() []*sandbox.Sandbox { return l.items }

func (l listedManager) Get(prefix string) (*sandbox.Sandbox, error) {
	var found []*sandbox.Sandbox
	for _, sb := range l.items {
		if sb.ID == prefix {
			return sb, nil
		}
		if strings.HasPrefix(sb.ID, prefix) {
			found = append(found, sb)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("pod sandbox %s: %w", prefix, store.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("prefix %s is ambiguous: %w", prefix, store.ErrInvalidArgument)
}

func fixedSandboxes() []*sandbox.Sandbox {
	mk := func(id string, st sandbox.State, labels map[string]string) *sandbox.Sandbox {
		return &sandbox.Sandbox{ID: id, State: st, CreatedAt: time.Unix(1700000000, 0),
			Config: sandbox.Config{Name: "n-" + id, Namespace: "ns", UID: "u-" + id, Labels: labels}}
	}
	return []*sandbox.Sandbox{
		mk("aaa111", sandbox.StateReady, map[string]string{"app": "web", "tier": "front"}),
		mk("aaa222", sandbox.StateNotReady, map[string]string{"app": "web"}),
		mk("bbb333", sandbox.StateReady, map[string]string{"app": "db"}),
		mk("ccc444", sandbox.StateReady, nil),
	}
}

func TestListPodSandboxFilters(t *testing.T) {
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: fixedSandboxes()}}))
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	tests := []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"no filter", nil, []string{"aaa111", "aaa222", "bbb333", "ccc444"}},
		{"full id", &runtimeapi.PodSandboxFilter{Id: "bbb333"}, []string{"bbb333"}},
		{"unique prefix", &runtimeapi.PodSandboxFilter{Id: "aaa2"}, []string{"aaa222"}},
		{"ambiguous prefix", &runtimeapi.PodSandboxFilter{Id: "aaa"}, nil},
		{"unknown id", &runtimeapi.PodSandboxFilter{Id: "zzz"}, nil},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{"aaa111", "bbb333", "ccc444"}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{"aaa222"}},
		{"one label", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}, []string{"aaa111", "aaa222"}},
		{"all labels must match", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web", "tier": "front"}}, []string{"aaa111"}},
		{"label value differs", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "cache"}}, nil},
		{"id and state disagree", &runtimeapi.PodSandboxFilter{Id: "aaa222", State: ready}, nil},
		{"prefix, state and label", &runtimeapi.PodSandboxFilter{Id: "aaa1", State: ready, LabelSelector: map[string]string{"tier": "front"}}, []string{"aaa111"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{Filter: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range resp.Items {
				got = append(got, p.Id)
				if p.Metadata.GetName() != "n-"+p.Id || p.CreatedAt != time.Unix(1700000000, 0).UnixNano() {
					t.Errorf("item %s has metadata %v created %d", p.Id, p.Metadata, p.CreatedAt)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ids = %v, want %v", got, tt.want)
			}
			streamed := streamIDs(t, c, tt.filter)
			if !slices.Equal(streamed, tt.want) {
				t.Fatalf("streamed ids = %v, want %v", streamed, tt.want)
			}
		})
	}
}

func streamIDs(t *testing.T, c runtimeapi.RuntimeServiceClient, f *runtimeapi.PodSandboxFilter) []string {
	t.Helper()
	stream, err := c.StreamPodSandboxes(context.Background(), &runtimeapi.StreamPodSandboxesRequest{Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 10000 { // bounded: far more messages than any test sends
		resp, err := stream.Recv()
		if err == io.EOF {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.PodSandboxes) == 0 || len(resp.PodSandboxes) > streamBatch {
			t.Fatalf("batch of %d sandboxes, want 1..%d", len(resp.PodSandboxes), streamBatch)
		}
		for _, p := range resp.PodSandboxes {
			ids = append(ids, p.Id)
		}
	}
	t.Fatal("stream did not end")
	return nil
}

func TestStreamPodSandboxesBatches(t *testing.T) {
	var items []*sandbox.Sandbox
	var want []string
	for i := range 2*streamBatch + 7 {
		id := fmt.Sprintf("%08d", i)
		items = append(items, &sandbox.Sandbox{ID: id, State: sandbox.StateReady,
			Config: sandbox.Config{Name: "p", Namespace: "ns", UID: id}})
		want = append(want, id)
	}
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: items}}))
	got := streamIDs(t, c, nil)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("streamed %d sandboxes, want %d", len(got), len(want))
	}
}

func TestUpdateRuntimeConfig(t *testing.T) {
	n, err := cni.New(context.Background(), cni.Options{ConfDir: t.TempDir(), BinDirs: []string{t.TempDir()}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c := dial(t, NewServer(Options{Config: config.Default(), PodNetwork: n}))
	tests := []struct {
		name, cidr, want string
		code             codes.Code
	}{
		{"ipv4", "10.244.1.0/24", "10.244.1.0/24", codes.OK},
		{"dual stack", "10.244.2.0/24,fd00:10:244:2::/64", "10.244.2.0/24,fd00:10:244:2::/64", codes.OK},
		{"empty keeps the last", "", "10.244.2.0/24,fd00:10:244:2::/64", codes.OK},
		{"not a cidr", "10.244.3.0", "10.244.2.0/24,fd00:10:244:2::/64", codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.UpdateRuntimeConfig(context.Background(), &runtimeapi.UpdateRuntimeConfigRequest{
				RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: tt.cidr}}})
			if status.Code(err) != tt.code {
				t.Fatalf("got %v, want %v", err, tt.code)
			}
			if tt.code == codes.InvalidArgument && !strings.Contains(err.Error(), "runtime_config.network_config.pod_cidr") {
				t.Fatalf("error does not name the field: %v", err)
			}
			if got := n.PodCIDR(); got != tt.want {
				t.Fatalf("pod CIDR = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPodResources(t *testing.T) {
	tests := []struct {
		name          string
		res, overhead *runtimeapi.LinuxContainerResources
		want          *sandbox.Resources
		wantErr       bool
	}{
		{"none", nil, nil, nil, false},
		{"overhead alone is no limit", nil, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20}, nil, false},
		{"resources only",
			&runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0"}, nil,
			&sandbox.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, CpusetCPUs: "0"}, false},
		{"overhead added",
			&runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20},
			&runtimeapi.LinuxContainerResources{CpuShares: 10, CpuQuota: 5000, CpuPeriod: 50000, MemoryLimitInBytes: 1 << 20},
			&sandbox.Resources{CPUShares: 522, CPUQuota: 60000, CPUPeriod: 100000, MemoryLimit: 65 << 20}, false},
		{"unlimited stays unlimited",
			&runtimeapi.LinuxContainerResources{CpuShares: 2},
			&runtimeapi.LinuxContainerResources{CpuQuota: 5000, MemoryLimitInBytes: 1 << 20},
			&sandbox.Resources{CPUShares: 2}, false},
		{"negative", &runtimeapi.LinuxContainerResources{CpuPeriod: -1}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := podResources(tt.res, tt.overhead)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if (got == nil) != (tt.want == nil) || (got != nil && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
