package sandbox_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// hookLog records the pod hooks' calls.
type hookLog struct {
	mu      sync.Mutex
	started []string
	removed []string
}

func (h *hookLog) add(list *[]string, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*list = append(*list, id)
}

func TestStartPodHook(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failADD  bool
		hookErr  error
		wantErr  string
		wantUndo bool // RemoveContainers runs for the pod
	}{
		{name: "started with the pod"},
		{name: "hook failure fails Run", hookErr: errors.New("injected monitor failure"), wantErr: "injected monitor failure", wantUndo: true},
		{name: "ADD failure stops what the hook started", failADD: true, wantErr: "injected ADD failure", wantUndo: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(n *cnitest.Net) []byte { return n.Conf("1.0.0", nil, []string{"failer"}) })
			e.net.FailPlugin(t, "failer")
			e.net.SetFail(t, "failer", "add", tc.failADD)
			var h hookLog
			opts := e.opts
			opts.Hooks.StartPod = func(_ context.Context, id string) error {
				h.add(&h.started, id)
				return tc.hookErr
			}
			opts.Hooks.RemoveContainers = func(_ context.Context, id string) error {
				h.add(&h.removed, id)
				return nil
			}
			m, err := sandbox.NewManager(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			sb, err := m.Run(ctx, podConfig(1, false))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Remove(ctx, sb.ID); err != nil {
					t.Fatal(err)
				}
				if len(h.started) != 1 || h.started[0] != sb.ID {
					t.Errorf("StartPod calls %v, want one for %s", h.started, sb.ID)
				}
				e.checkClean(t, []string{sb.ID})
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run err = %v, want %q", err, tc.wantErr)
			}
			if len(h.started) != 1 {
				t.Fatalf("StartPod calls %v, want one", h.started)
			}
			if tc.wantUndo && (len(h.removed) != 1 || h.removed[0] != h.started[0]) {
				t.Errorf("RemoveContainers calls %v, want one for %s", h.removed, h.started[0])
			}
			e.checkClean(t, nil)
		})
	}
}
