package sandbox_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
	ctrruntime "github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// TestPodInitWithFailingPlugin: the pod init starts while the plugins run ADD and stops
// while they run DEL, so a failing plugin must neither leave an init running after a
// failed Run nor keep Stop from stopping it; the retried Stop and Remove finish the rest.
func TestPodInitWithFailingPlugin(t *testing.T) {
	for _, op := range []string{"add", "del"} {
		t.Run(op, func(t *testing.T) {
			e := newEnv(t, func(n *cnitest.Net) []byte { return n.Conf("1.0.0", []string{"failer"}, nil) })
			e.net.FailPlugin(t, "failer")
			ctx := context.Background()
			bin := ctrruntime.NewSealedBinary("")
			t.Cleanup(bin.Close)
			inits := sandbox.NewPodInits(filepath.Join(t.TempDir(), "inits"), e.cg, bin)
			var pid int
			opts := e.opts
			opts.Hooks.StartPodInit = func(ctx context.Context, sb *sandbox.Sandbox) error {
				err := inits.Start(ctx, sb)
				pid = inits.Pid(sb.ID)
				return err
			}
			opts.Hooks.StopPodInit = inits.Stop
			m, err := sandbox.NewManager(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			c := podConfig(31, true)
			c.PIDMode = sandbox.ModePod
			e.net.SetFail(t, "failer", "add", op == "add")
			sb, err := m.Run(ctx, c)
			if op == "add" {
				if err == nil || !strings.Contains(err.Error(), "injected ADD failure") {
					t.Fatalf("Run err = %v, want the injected failure", err)
				}
				if pid == 0 {
					t.Fatal("the pod init did not start alongside the ADD")
				}
				if alive(pid) {
					t.Errorf("pod init %d still runs after the failed Run", pid)
				}
				e.checkClean(t, nil)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e.net.SetFail(t, "failer", "del", true)
			if err := m.Stop(ctx, sb.ID); err == nil || !strings.Contains(err.Error(), "injected DEL failure") {
				t.Fatalf("Stop err = %v, want the injected failure", err)
			}
			if got, err := m.Get(sb.ID); err != nil || got.State != sandbox.StateNotReady {
				t.Fatalf("after failed Stop: %+v, %v; want NOTREADY", got, err)
			}
			if alive(pid) {
				t.Errorf("pod init %d still runs after Stop (only DEL failed)", pid)
			}
			e.net.SetFail(t, "failer", "del", false)
			if err := m.Stop(ctx, sb.ID); err != nil {
				t.Fatalf("Stop after the plugin recovered: %v", err)
			}
			if err := m.Remove(ctx, sb.ID); err != nil {
				t.Fatal(err)
			}
			if inits.Pid(sb.ID) != 0 {
				t.Error("pod init still recorded after Remove")
			}
			e.checkClean(t, []string{sb.ID})
		})
	}
}
