package cri

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// listedContainers serves Get/List over fixed containers and answers Stop/Remove of an
// unknown container as the real manager does; the other methods are not used here.
type listedContainers struct {
	ContainerManager
	items []*container.Container
}

func (l listedContainers) List() []*container.Container { return l.items }

func (l listedContainers) Get(prefix string) (*container.Container, error) {
	var found []*container.Container
	for _, c := range l.items {
		if c.ID == prefix {
			return c, nil
		}
		if strings.HasPrefix(c.ID, prefix) {
			found = append(found, c)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return nil, fmt.Errorf("container %s: %w", prefix, store.ErrNotFound)
}

func (l listedContainers) Stop(_ context.Context, id string, _ time.Duration) error {
	_, err := l.Get(id)
	return err
}

func (l listedContainers) Remove(_ context.Context, id string) error {
	_, err := l.Get(id)
	return err
}

func fixedContainers() []*container.Container {
	mk := func(id, pod string, st container.State, labels map[string]string) *container.Container {
		return &container.Container{ID: id, PodSandboxID: pod, State: st, CreatedAt: time.Unix(1700000000, 0),
			Config: container.Config{Name: "n-" + id, Image: "busybox", Labels: labels}}
	}
	return []*container.Container{
		mk("c1aaa", "aaa111", container.StateRunning, map[string]string{"app": "web"}),
		mk("c2aaa", "aaa111", container.StateExited, map[string]string{"app": "web", "tier": "front"}),
		mk("c3bbb", "bbb333", container.StateCreated, map[string]string{"app": "db"}),
	}
}

func TestListContainersFilters(t *testing.T) {
	s := NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: fixedSandboxes()},
		Containers: listedContainers{items: fixedContainers()}})
	c := dial(t, s)
	running := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}
	for _, tt := range []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"no filter", nil, []string{"c1aaa", "c2aaa", "c3bbb"}},
		{"full id", &runtimeapi.ContainerFilter{Id: "c3bbb"}, []string{"c3bbb"}},
		{"unique prefix", &runtimeapi.ContainerFilter{Id: "c2"}, []string{"c2aaa"}},
		{"ambiguous prefix", &runtimeapi.ContainerFilter{Id: "c"}, nil},
		{"pod id", &runtimeapi.ContainerFilter{PodSandboxId: "aaa111"}, []string{"c1aaa", "c2aaa"}},
		{"pod prefix", &runtimeapi.ContainerFilter{PodSandboxId: "bbb"}, []string{"c3bbb"}},
		{"ambiguous pod prefix", &runtimeapi.ContainerFilter{PodSandboxId: "aaa"}, nil},
		{"state", &runtimeapi.ContainerFilter{State: running}, []string{"c1aaa"}},
		{"labels", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "web", "tier": "front"}}, []string{"c2aaa"}},
		{"id and pod disagree", &runtimeapi.ContainerFilter{Id: "c3bbb", PodSandboxId: "aaa111"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{Filter: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ct := range resp.Containers {
				got = append(got, ct.Id)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ids = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestContainerRPCValidationAndIdempotence(t *testing.T) {
	s := NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: fixedSandboxes()},
		Containers: listedContainers{items: fixedContainers()}})
	c := dial(t, s)
	ctx := context.Background()
	okCfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "x"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}}
	for _, tt := range []struct {
		name  string
		req   *runtimeapi.CreateContainerRequest
		code  codes.Code
		field string
	}{
		{"no pod", &runtimeapi.CreateContainerRequest{Config: okCfg}, codes.InvalidArgument, "pod_sandbox_id"},
		{"unknown pod", &runtimeapi.CreateContainerRequest{PodSandboxId: "zzz", Config: okCfg}, codes.NotFound, "pod_sandbox_id"},
		{"pod not ready", &runtimeapi.CreateContainerRequest{PodSandboxId: "aaa222", Config: okCfg}, codes.FailedPrecondition, "pod_sandbox_id"},
		{"no config", &runtimeapi.CreateContainerRequest{PodSandboxId: "aaa111"}, codes.InvalidArgument, "config"},
		{"no metadata", &runtimeapi.CreateContainerRequest{PodSandboxId: "aaa111", Config: &runtimeapi.ContainerConfig{
			Image: &runtimeapi.ImageSpec{Image: "busybox"}}}, codes.InvalidArgument, "config.metadata"},
		{"no name", &runtimeapi.CreateContainerRequest{PodSandboxId: "aaa111", Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{}, Image: &runtimeapi.ImageSpec{Image: "busybox"}}}, codes.InvalidArgument, "config.metadata.name"},
		{"no image", &runtimeapi.CreateContainerRequest{PodSandboxId: "aaa111", Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "x"}}}, codes.InvalidArgument, "config.image.image"},
	} {
		_, err := c.CreateContainer(ctx, tt.req)
		if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: got %v, want %v naming %s", tt.name, err, tt.code, tt.field)
		}
	}
	if _, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "zzz"}); err != nil {
		t.Errorf("stop of an unknown container: %v", err)
	}
	if _, err := c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: "zzz"}); err != nil {
		t.Errorf("remove of an unknown container: %v", err)
	}
	if _, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "zzz"}); status.Code(err) != codes.NotFound {
		t.Errorf("status of an unknown container: %v, want NotFound", err)
	}
	st, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "c2", Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Id != "c2aaa" || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || !strings.Contains(st.Info["info"], `"pid"`) {
		t.Errorf("status of c2: %+v info %v", st.Status, st.Info)
	}
}

func TestContainerConfigTranslation(t *testing.T) {
	uid := &runtimeapi.Int64Value{Value: 1000}
	cfg, err := containerConfig(&runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "n", Attempt: 2},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Envs:     []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}},
		Mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid, SupplementalGroups: []int64{5}},
			Resources:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20, CpuShares: 512},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "n" || cfg.Attempt != 2 || !slices.Equal(cfg.Env, []string{"A=1"}) || len(cfg.Mounts) != 1 ||
		!cfg.Mounts[0].Readonly || cfg.Mounts[0].Propagation != 1 || cfg.RunAsUser == nil || *cfg.RunAsUser != 1000 ||
		!slices.Equal(cfg.SupplementalGroups, []uint32{5}) || cfg.Resources.MemoryLimit != 1<<20 || cfg.Resources.CPUShares != 512 {
		t.Fatalf("translated config: %+v", cfg)
	}
	for _, bad := range []*runtimeapi.ContainerConfig{
		{Metadata: &runtimeapi.ContainerMetadata{Name: "n"}, Image: &runtimeapi.ImageSpec{Image: "b"}, Envs: []*runtimeapi.KeyValue{{Value: []byte("x")}}},
		{Metadata: &runtimeapi.ContainerMetadata{Name: "n"}, Image: &runtimeapi.ImageSpec{Image: "b"}, Mounts: []*runtimeapi.Mount{{HostPath: "/x"}}},
		{Metadata: &runtimeapi.ContainerMetadata{Name: "n"}, Image: &runtimeapi.ImageSpec{Image: "b"}, Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: &runtimeapi.Int64Value{Value: 1}}}},
	} {
		if _, err := containerConfig(bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("config %v: %v, want InvalidArgument", bad, err)
		}
	}
}
