package cri

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
)

type fakeInits map[string]int

func (f fakeInits) Pid(id string) int { return f[id] }

// TestDeadPodInitIsNotReady checks that a READY pod sharing one PID namespace whose init is
// gone is reported NOTREADY by ListPodSandbox (filters included) and PodSandboxStatus.
func TestDeadPodInitIsNotReady(t *testing.T) {
	items := fixedSandboxes() // PID mode POD (the zero value)
	c := dial(t, NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: items},
		PodInits: fakeInits{"bbb333": 42}}))
	ctx := context.Background()
	want := map[string]runtimeapi.PodSandboxState{
		"aaa111": runtimeapi.PodSandboxState_SANDBOX_NOTREADY, // init gone
		"aaa222": runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
		"bbb333": runtimeapi.PodSandboxState_SANDBOX_READY, // init running
		"ccc444": runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
	}
	for id, st := range want {
		r, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		if err != nil || r.Status.State != st {
			t.Errorf("status of %s: %v, %v; want %v", id, r.GetStatus().GetState(), err, st)
		}
	}
	l, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
	if err != nil || len(l.Items) != 1 || l.Items[0].Id != "bbb333" {
		t.Errorf("READY sandboxes: %v, %v; want only bbb333", l.GetItems(), err)
	}
	if items[0].State != "READY" {
		t.Error("the manager's sandbox was modified")
	}
}
