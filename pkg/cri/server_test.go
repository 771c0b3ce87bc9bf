package cri

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/config"
)

type fakeNetwork struct{ err error }

func (f fakeNetwork) Status(context.Context) error { return f.err }

// panicky is a server whose Version panics, to prove the interceptor contains it.
type panicky struct{ *Server }

func (p panicky) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	var m map[string]int
	m["boom"]++ // nil map write: a real runtime panic
	return nil, nil
}

// dial serves rt over an in-memory listener with the production interceptor and returns a client.
func dial(t *testing.T, rt runtimeapi.RuntimeServiceServer) runtimeapi.RuntimeServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(NewInterceptor(klog.Background()).ServerOptions()...)
	runtimeapi.RegisterRuntimeServiceServer(g, rt)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

func TestVersion(t *testing.T) {
	c := dial(t, NewServer(Options{Version: "1.2.3", Config: config.Default()}))
	v, err := c.Version(context.Background(), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "cri-mini" || v.RuntimeVersion != "1.2.3" || v.RuntimeApiVersion != "v1" {
		t.Fatalf("version = %+v", v)
	}
}

func TestStatus(t *testing.T) {
	cfg := config.Default()
	cfg.State = "/run/test-state"
	tests := []struct {
		name        string
		network     NetworkStatus
		wantNetwork bool
		wantReason  string
	}{
		{"network ready", fakeNetwork{}, true, ""},
		{"no cni config", fakeNetwork{errors.New("no network config found in /etc/cni/net.d")}, false, "no network config found"},
		{"no network manager", nil, false, "no network manager"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, NewServer(Options{Config: cfg, Network: tt.network}))
			resp, err := c.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			conds := map[string]*runtimeapi.RuntimeCondition{}
			for _, cond := range resp.Status.Conditions {
				conds[cond.Type] = cond
			}
			if !conds[runtimeapi.RuntimeReady].GetStatus() {
				t.Fatalf("RuntimeReady false: %+v", conds[runtimeapi.RuntimeReady])
			}
			net := conds[runtimeapi.NetworkReady]
			if net.GetStatus() != tt.wantNetwork {
				t.Fatalf("NetworkReady = %v, want %v", net.GetStatus(), tt.wantNetwork)
			}
			if !tt.wantNetwork && (net.Reason == "" || !strings.Contains(net.Message, tt.wantReason)) {
				t.Fatalf("NetworkReady reason %q message %q, want one containing %q", net.Reason, net.Message, tt.wantReason)
			}
			if len(resp.RuntimeHandlers) != 1 || resp.RuntimeHandlers[0].Name != "" || resp.RuntimeHandlers[0].Features == nil {
				t.Fatalf("runtime handlers = %+v, want the default handler with features", resp.RuntimeHandlers)
			}
			var info map[string]any
			if err := json.Unmarshal([]byte(resp.Info["config"]), &info); err != nil {
				t.Fatalf("verbose config is not JSON: %v", err)
			}
			if info["stateDir"] != "/run/test-state" {
				t.Fatalf("stateDir = %v", info["stateDir"])
			}
		})
	}

	c := dial(t, NewServer(Options{Config: cfg, Network: fakeNetwork{}}))
	resp, err := c.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Info) != 0 {
		t.Fatalf("non-verbose status has info: %v", resp.Info)
	}
}

func TestRuntimeConfig(t *testing.T) {
	c := dial(t, NewServer(Options{Config: config.Default()}))
	resp, err := c.RuntimeConfig(context.Background(), &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("cgroup driver = %v", resp.GetLinux().GetCgroupDriver())
	}
}

func TestPanicBecomesInternalAndServerKeepsServing(t *testing.T) {
	c := dial(t, panicky{NewServer(Options{Config: config.Default(), Network: fakeNetwork{}})})
	_, err := c.Version(context.Background(), &runtimeapi.VersionRequest{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panicking RPC: got %v, want Internal", err)
	}
	if _, err := c.Status(context.Background(), &runtimeapi.StatusRequest{}); err != nil {
		t.Fatalf("server stopped serving after a panic: %v", err)
	}
}

func TestIsChurn(t *testing.T) {
	for rpc, want := range map[string]bool{
		"RunPodSandbox": true, "StopPodSandbox": true, "RemovePodSandbox": true, "CreateContainer": true,
		"StartContainer": true, "StopContainer": true, "RemoveContainer": true, "PullImage": true,
		"RemoveImage":    true,
		"ListPodSandbox": false, "ContainerStatus": false, "Status": false, "ImageStatus": false,
		"ListContainerStats": false, "PodSandboxStats": false, "Version": false, "ImageFsInfo": false,
		"StreamContainers": false, "RuntimeConfig": false, "ExecSync": false, "Exec": false,
		"UpdateRuntimeConfig": false, "ReopenContainerLog": false, "UpdateContainerResources": false,
	} {
		if got := isChurn(rpc); got != want {
			t.Errorf("isChurn(%q) = %v, want %v", rpc, got, want)
		}
	}
}
