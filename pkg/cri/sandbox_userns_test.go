package cri

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// runRecorder records the configs RunPodSandbox hands to the manager: a refused request
// must never reach it.
type runRecorder struct {
	SandboxManager
	mu   sync.Mutex
	runs []sandbox.Config
}

func (r *runRecorder) Run(_ context.Context, c sandbox.Config) (*sandbox.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, c)
	return &sandbox.Sandbox{ID: "sb-" + c.Name, Config: c}, nil
}

func (r *runRecorder) take() []sandbox.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	runs := r.runs
	r.runs = nil
	return runs
}

func mapping(container, host, length uint32) []*runtimeapi.IDMapping {
	return []*runtimeapi.IDMapping{{ContainerId: container, HostId: host, Length: length}}
}

// usernsPodConfig is a pod as kubelet sends it with hostUsers: false: its own network and
// IPC, one PID namespace per container, one 65536-ID range at a multiple of 65536.
func usernsPodConfig(mutate func(n *runtimeapi.NamespaceOption)) *runtimeapi.PodSandboxConfig {
	cfg := validPodConfig("userns")
	n := &runtimeapi.NamespaceOption{
		Pid: runtimeapi.NamespaceMode_CONTAINER,
		UsernsOptions: &runtimeapi.UserNamespace{
			Mode: runtimeapi.NamespaceMode_POD,
			Uids: mapping(0, 5*65536, 65536),
			Gids: mapping(0, 5*65536, 65536),
		},
	}
	if mutate != nil {
		mutate(n)
	}
	cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: n}}
	return cfg
}

func usernsOf(host, length uint32) *sandbox.UserNamespace {
	return &sandbox.UserNamespace{
		UIDMappings: []sandbox.IDMapping{{HostID: host, Length: length}},
		GIDMappings: []sandbox.IDMapping{{HostID: host, Length: length}},
	}
}

func TestRunPodSandboxUserns(t *testing.T) {
	const field = "config.linux.security_context.namespace_options."
	rec := &runRecorder{}
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: rec, PodUserNamespaces: true}))
	tests := []struct {
		name   string
		mutate func(n *runtimeapi.NamespaceOption)
		want   *sandbox.UserNamespace // accepted with this user namespace, when wantErr is ""
		// wantErr is text of an InvalidArgument error, naming the field.
		wantErr string
	}{
		{"kubelet shape", nil, usernsOf(5*65536, 65536), ""},
		{"critest shape", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids, n.UsernsOptions.Gids = mapping(0, 1000, 100000), mapping(0, 1000, 100000)
		}, usernsOf(1000, 100000), ""},
		{"up to the last ID", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids = mapping(0, math.MaxUint32-65536, 65536)
		}, &sandbox.UserNamespace{
			UIDMappings: []sandbox.IDMapping{{HostID: math.MaxUint32 - 65536, Length: 65536}},
			GIDMappings: []sandbox.IDMapping{{HostID: 5 * 65536, Length: 65536}},
		}, ""},
		{"unset", func(n *runtimeapi.NamespaceOption) { n.UsernsOptions = nil }, nil, ""},
		{"node", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}
		}, nil, ""},
		{"node with a shared PID namespace", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Mode, n.Pid = runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD
		}, nil, ""},
		{"container mode", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Mode = runtimeapi.NamespaceMode_CONTAINER
		}, nil, field + "userns_options.mode"},
		{"target mode", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Mode = runtimeapi.NamespaceMode_TARGET
		}, nil, field + "userns_options.mode"},
		{"unknown mode", func(n *runtimeapi.NamespaceOption) { n.UsernsOptions.Mode = 9 }, nil, field + "userns_options.mode"},
		{"two uid mappings", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids = append(mapping(0, 1000, 100000), mapping(0, 2000, 100000)...)
		}, nil, field + "userns_options.uids: exactly one mapping"},
		{"two gid mappings", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Gids = append(mapping(0, 1000, 100000), mapping(0, 2000, 100000)...)
		}, nil, field + "userns_options.gids: exactly one mapping"},
		{"no uid mapping", func(n *runtimeapi.NamespaceOption) { n.UsernsOptions.Uids = nil }, nil, field + "userns_options.uids"},
		{"no gid mapping", func(n *runtimeapi.NamespaceOption) { n.UsernsOptions.Gids = nil }, nil, field + "userns_options.gids"},
		// A null entry arrives over gRPC as an all-zero mapping.
		{"null mapping", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids = []*runtimeapi.IDMapping{nil}
		}, nil, field + "userns_options.uids[0]"},
		{"container root not mapped", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids, n.UsernsOptions.Gids = mapping(1, 1000, 100000), mapping(1, 1000, 100000)
		}, nil, field + "userns_options.uids[0].container_id"},
		{"container root gid not mapped", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Gids = mapping(1, 1000, 100000)
		}, nil, field + "userns_options.gids[0].container_id"},
		{"empty range", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids = mapping(0, 1000, 0)
		}, nil, field + "userns_options.uids[0].length"},
		{"host root", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids = mapping(0, 0, 65536)
		}, nil, field + "userns_options.uids[0].host_id"},
		{"host root gid", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Gids = mapping(0, 0, 65536)
		}, nil, field + "userns_options.gids[0].host_id"},
		{"past the 32-bit ID space", func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions.Uids = mapping(0, math.MaxUint32-65535, 65536)
		}, nil, field + "userns_options.uids[0]: host_id"},
		{"host network", func(n *runtimeapi.NamespaceOption) {
			n.Network = runtimeapi.NamespaceMode_NODE
		}, nil, field + "network"},
		{"host ipc", func(n *runtimeapi.NamespaceOption) {
			n.Ipc = runtimeapi.NamespaceMode_NODE
		}, nil, field + "ipc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: usernsPodConfig(tt.mutate)})
			runs := rec.take()
			if tt.wantErr != "" {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.wantErr) {
					t.Fatalf("got %v, want InvalidArgument with %q", err, tt.wantErr)
				}
				if len(runs) != 0 {
					t.Fatalf("a refused request reached the manager: %+v", runs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 1 || !reflect.DeepEqual(runs[0].UserNS, tt.want) {
				t.Fatalf("manager got %+v, want user namespace %+v", runs, tt.want)
			}
		})
	}
}

// TestRunPodSandboxUsernsOff: on a node without idmapped mounts, a valid pod user
// namespace is refused after validation (a bad one still gets its own error), NODE still
// works, and Status does not advertise the feature.
func TestRunPodSandboxUsernsOff(t *testing.T) {
	rec := &runRecorder{}
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: rec}))
	ctx := context.Background()
	_, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: usernsPodConfig(nil)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(),
		"config.linux.security_context.namespace_options.userns_options.mode: POD is not supported on this node") {
		t.Fatalf("pod user namespace while off: %v", err)
	}
	_, err = c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: usernsPodConfig(func(n *runtimeapi.NamespaceOption) {
		n.UsernsOptions.Uids = mapping(1, 1000, 100000)
	})})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "userns_options.uids[0].container_id") {
		t.Fatalf("invalid pod user namespace while off: %v", err)
	}
	if runs := rec.take(); len(runs) != 0 {
		t.Fatalf("refused requests reached the manager: %+v", runs)
	}
	_, err = c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: usernsPodConfig(func(n *runtimeapi.NamespaceOption) {
		n.UsernsOptions.Mode = runtimeapi.NamespaceMode_NODE
	})})
	if err != nil {
		t.Fatalf("node user namespace: %v", err)
	}
	if runs := rec.take(); len(runs) != 1 || runs[0].UserNS != nil {
		t.Fatalf("manager got %+v, want one run without a user namespace", runs)
	}
	st, err := c.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.GetRuntimeHandlers() {
		if h.GetFeatures().GetUserNamespaces() {
			t.Errorf("runtime handler %q advertises user namespaces", h.GetName())
		}
	}
}

func TestPodUsernsNullEntry(t *testing.T) {
	_, err := podUserns(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping(0, 1000, 1),
		Gids: []*runtimeapi.IDMapping{nil}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "userns_options.gids[0]: null entry") {
		t.Fatalf("got %v, want InvalidArgument naming the null entry", err)
	}
}

func TestPodSandboxStatusUserns(t *testing.T) {
	sb := &sandbox.Sandbox{
		ID: "sb", State: sandbox.StateReady, UsernsPath: "/run/x/ns/user", NetNSPath: "/run/x/ns/net",
		Config: sandbox.Config{Name: "p", Namespace: "n", UID: "u", PIDMode: sandbox.ModeContainer, UserNS: &sandbox.UserNamespace{
			UIDMappings: []sandbox.IDMapping{{HostID: 1 << 20, Length: 65536}},
			GIDMappings: []sandbox.IDMapping{{HostID: 2 << 20, Length: 65536}},
		}},
	}
	want := &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD,
		Uids: mapping(0, 1<<20, 65536),
		Gids: mapping(0, 2<<20, 65536),
	}
	got := podSandboxStatus(sb).GetLinux().GetNamespaces().GetOptions().GetUsernsOptions()
	if got.String() != want.String() {
		t.Errorf("status userns_options = %v, want %v", got, want)
	}
	if got := criConfig(sb).GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions(); got.String() != want.String() {
		t.Errorf("verbose config userns_options = %v, want %v", got, want)
	}
	info, err := sandboxInfo(sb, 0)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces  []specNamespace `json:"namespaces"`
				UIDMappings []specIDMapping `json:"uidMappings"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(info), &v); err != nil {
		t.Fatal(err)
	}
	if ns := v.RuntimeSpec.Linux.Namespaces; len(ns) == 0 || ns[0] != (specNamespace{Type: "user", Path: sb.UsernsPath}) {
		t.Errorf("verbose namespaces = %+v, want the user pin first", ns)
	}
	if m := v.RuntimeSpec.Linux.UIDMappings; len(m) != 1 || m[0] != (specIDMapping{HostID: 1 << 20, Size: 65536}) {
		t.Errorf("verbose uidMappings = %+v", m)
	}
	sb.Config.UserNS = nil
	if got := podSandboxStatus(sb).GetLinux().GetNamespaces().GetOptions().GetUsernsOptions(); got != nil {
		t.Errorf("node user namespace reported as %v, want unset", got)
	}
}

// TestStatusAdvertisesUserns: a node that can idmap advertises user namespaces, which is
// what makes kubelet (and critest) send pods with one.
func TestStatusAdvertisesUserns(t *testing.T) {
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: &runRecorder{}, PodUserNamespaces: true}))
	st, err := c.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hs := st.GetRuntimeHandlers(); len(hs) != 1 || !hs[0].GetFeatures().GetUserNamespaces() {
		t.Errorf("runtime handlers %v: want the default one with user namespaces", hs)
	}
}
