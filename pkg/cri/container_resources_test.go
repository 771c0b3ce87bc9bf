package cri

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/container"
)

func TestLinuxResources(t *testing.T) {
	tests := []struct {
		name      string
		in        *runtimeapi.LinuxContainerResources
		want      *cgroups.Resources
		wantAdj   int
		wantField string // non-empty: InvalidArgument naming it
	}{
		{name: "nil"},
		{name: "all", in: &runtimeapi.LinuxContainerResources{
			CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20,
			MemorySwapLimitInBytes: 128 << 20, CpusetCpus: "0", CpusetMems: "0", OomScoreAdj: -10,
			Unified: map[string]string{"memory.high": "1M"},
		}, want: &cgroups.Resources{
			CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20,
			MemorySwapLimit: 128 << 20, CpusetCPUs: "0", CpusetMems: "0", Unified: map[string]string{"memory.high": "1M"},
		}, wantAdj: -10},
		{name: "negative shares", in: &runtimeapi.LinuxContainerResources{CpuShares: -1}, wantField: "x.cpu_shares"},
		{name: "negative memory", in: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, wantField: "x.memory_limit_in_bytes"},
		{name: "oom score", in: &runtimeapi.LinuxContainerResources{OomScoreAdj: -1001}, wantField: "x.oom_score_adj"},
		{name: "quota", in: &runtimeapi.LinuxContainerResources{CpuQuota: 5}, wantField: "x.cpu_quota"},
		{name: "swap", in: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 10 << 20, MemorySwapLimitInBytes: 1 << 20}, wantField: "x.memory_swap_limit_in_bytes"},
		{name: "hugepage empty size", in: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{Limit: 1}}}, wantField: "x.hugepage_limits[0].page_size"},
		{name: "hugepage bad size", in: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "7KB"}}}, wantField: "x.hugepage_limits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, adj, err := linuxResources(tt.in, "x")
			if tt.wantField != "" {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantField+":") {
					t.Fatalf("err = %v, want InvalidArgument naming %s", err, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if (adj == nil) != (tt.in == nil) || (adj != nil && *adj != tt.wantAdj) {
				t.Errorf("oom_score_adj %v, want %d", adj, tt.wantAdj)
			}
			// The status reports what was translated.
			if tt.in != nil {
				back := toLinuxResources(got, adj).GetLinux()
				if back.GetMemorySwapLimitInBytes() != tt.in.GetMemorySwapLimitInBytes() || back.GetCpuShares() != tt.in.GetCpuShares() || back.GetOomScoreAdj() != tt.in.GetOomScoreAdj() {
					t.Errorf("status resources %v, want %v", back, tt.in)
				}
			}
		})
	}
}

// updatingContainers records UpdateResources calls.
type updatingContainers struct {
	listedContainers
	got *cgroups.Resources
}

func (u *updatingContainers) UpdateResources(_ context.Context, id string, r *cgroups.Resources) error {
	if _, err := u.Get(id); err != nil {
		return err
	}
	u.got = r
	return nil
}

func TestUpdateContainerResources(t *testing.T) {
	u := &updatingContainers{listedContainers: listedContainers{items: fixedContainers()}}
	s := NewServer(Options{Config: config.Default(), Containers: u})
	id := fixedContainers()[0].ID
	tests := []struct {
		name string
		req  *runtimeapi.UpdateContainerResourcesRequest
		code codes.Code
	}{
		{"no id", &runtimeapi.UpdateContainerResourcesRequest{}, codes.InvalidArgument},
		{"unknown", &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "zzz"}, codes.NotFound},
		{"bad value", &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{CpuPeriod: -1}}, codes.InvalidArgument},
		{"ok, windows ignored", &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
			Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}, Windows: &runtimeapi.WindowsContainerResources{CpuCount: 2}}, codes.OK},
	}
	for _, tt := range tests {
		_, err := s.UpdateContainerResources(context.Background(), tt.req)
		if got := status.Code(toStatus(err)); got != tt.code {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
		}
	}
	if u.got == nil || u.got.MemoryLimit != 1<<30 {
		t.Errorf("manager got %+v", u.got)
	}
}

// statsContainers serves fixed stats for the fixed containers.
type statsContainers struct{ listedContainers }

func (s statsContainers) Stats(id string) (*container.Container, *container.Stats, error) {
	c, err := s.Get(id)
	if err != nil {
		return nil, nil, err
	}
	return c, &container.Stats{Timestamp: time.Unix(1700000001, 0), CPUUsageNanos: 7, MemoryWorkingSet: 9}, nil
}

func TestListContainerStatsFilters(t *testing.T) {
	s := NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: fixedSandboxes()},
		Containers: statsContainers{listedContainers{items: fixedContainers()}}})
	for _, tt := range []struct {
		name   string
		filter *runtimeapi.ContainerStatsFilter
		want   []string
	}{
		// c2aaa is exited: it uses nothing and is left out.
		{"nil", nil, []string{"c1aaa", "c3bbb"}},
		{"id prefix", &runtimeapi.ContainerStatsFilter{Id: "c1"}, []string{"c1aaa"}},
		{"exited by id", &runtimeapi.ContainerStatsFilter{Id: "c2aaa"}, []string{}},
		{"unknown id", &runtimeapi.ContainerStatsFilter{Id: "zz"}, []string{}},
		{"labels", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"app": "db"}}, []string{"c3bbb"}},
		{"label mismatch", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"app": "none"}}, []string{}},
	} {
		r, err := s.ListContainerStats(context.Background(), &runtimeapi.ListContainerStatsRequest{Filter: tt.filter})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := []string{}
		for _, st := range r.Stats {
			got = append(got, st.Attributes.Id)
			if st.Cpu.GetUsageCoreNanoSeconds().GetValue() != 7 || st.Memory.GetWorkingSetBytes().GetValue() != 9 || st.Cpu.Timestamp == 0 {
				t.Errorf("%s: stats %v", tt.name, st)
			}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	if _, err := s.ContainerStats(context.Background(), &runtimeapi.ContainerStatsRequest{ContainerId: "zz"}); status.Code(toStatus(err)) != codes.NotFound {
		t.Errorf("stats of an unknown container: %v", err)
	}
}
