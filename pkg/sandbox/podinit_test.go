package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/ns"
	ctrruntime "github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// TestMain lets the test binary act as `cri-mini pause` and as the user namespace holder:
// PodInits and ns.Pin re-execute their own binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ctrruntime.PauseCommand {
		os.Exit(ctrruntime.PauseMain())
	}
	if len(os.Args) > 1 && os.Args[1] == ns.HoldCommand {
		os.Exit(ns.HoldMain())
	}
	os.Exit(m.Run())
}

func nsOf(t *testing.T, pid int, kind string) string {
	t.Helper()
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + kind)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func childrenOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return strings.TrimSpace(string(b))
}

func waitFor(d time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return ok()
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil && !zombie(pid) }

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) == 0 || f[0] == "Z"
}

// TestPodInit runs a shared-PID pod: its init must be PID 1 of a new PID namespace, in the
// pod's network namespace and a leaf of the pod cgroup, survive signals other than
// SIGTERM, be found again by a second PodInits (a restarted daemon), and be gone with the
// pod.
func TestPodInit(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "inits")
	bin := ctrruntime.NewSealedBinary("")
	t.Cleanup(bin.Close)
	inits := sandbox.NewPodInits(dir, e.cg, bin)
	opts := e.opts
	opts.Hooks.StartPodInit, opts.Hooks.StopPodInit = inits.Start, inits.Stop
	m, err := sandbox.NewManager(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := podConfig(11, false)
	c.PIDMode = sandbox.ModePod
	sb, err := m.Run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Remove(ctx, sb.ID) })
	pid := inits.Pid(sb.ID)
	if pid == 0 {
		t.Fatal("no pod init running after Run")
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "NSpid:\t"+strconv.Itoa(pid)+"\t1\n") {
		t.Errorf("pod init is not PID 1 of a new PID namespace:\n%s", status)
	}
	// The init drops its privileges right after its starter released it.
	dropped := func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		status = b
		return strings.Contains(string(b), "CapEff:\t0000000000000000\n") && strings.Contains(string(b), "Uid:\t65535\t65535\t65535\t65535\n")
	}
	if !waitFor(5*time.Second, dropped) {
		t.Errorf("pod init kept privileges:\n%s", status)
	}
	if nsOf(t, pid, "pid") == nsOf(t, os.Getpid(), "pid") {
		t.Error("pod init is in the host's PID namespace")
	}
	if pinned, err := os.Stat(sb.NetNSPath); err != nil {
		t.Fatal(err)
	} else if st, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/net"); err != nil || !os.SameFile(pinned, st) {
		t.Errorf("pod init is not in the pod's network namespace (%v)", err)
	}
	cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), sb.CgroupParent+"/pod-init-"+sb.ID+"\n") {
		t.Errorf("pod init not in the pod cgroup's leaf:\n%s", cg)
	}
	path, err := inits.PIDNamespace(sb.ID)
	if err != nil || path != "/proc/"+strconv.Itoa(pid)+"/ns/pid" {
		t.Errorf("PIDNamespace = %q, %v", path, err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGPIPE} {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("pod init died of an ignored signal")
	}
	// An orphan in the pod's PID namespace is reparented to the init, which must reap it.
	sh := exec.Command("/bin/sh", "-c", "sleep 0.2 & exit 0")
	if err := ns.StartIn(ns.Paths{PID: path}, sh); err != nil {
		t.Fatal(err)
	}
	if err := sh.Wait(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return childrenOf(pid) == "" }) {
		t.Errorf("pod init did not reap its orphans: children %q", childrenOf(pid))
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Rss:") || strings.HasPrefix(l, "Pss:") || strings.HasPrefix(l, "Private_") {
				t.Logf("pod init memory: %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}
	// A second PodInits over the same records is what a restarted daemon has.
	restarted := sandbox.NewPodInits(dir, e.cg, bin)
	if got := restarted.Pid(sb.ID); got != pid {
		t.Errorf("after a restart Pid = %d, want %d", got, pid)
	}
	stopStart := time.Now()
	if err := m.Stop(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	// SIGTERM, not the SIGKILL after the 2s grace, must have ended it.
	if d := time.Since(stopStart); d > 1500*time.Millisecond {
		t.Errorf("Stop took %v: the init did not exit on SIGTERM", d)
	}
	if alive(pid) {
		t.Error("pod init survived Stop")
	}
	if _, err := inits.PIDNamespace(sb.ID); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Errorf("PIDNamespace after Stop: %v, want FailedPrecondition", err)
	}
	if err := m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.checkClean(t, []string{sb.ID})
}

// TestHoldVersusRemove races container creates (Hold, "create", release) against Remove
// of the pod: every container that got created must have been removed by the pod's
// RemoveContainers hook, and nothing can be created once Remove has begun.
func TestHoldVersusRemove(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var mu sync.Mutex
	created := map[string]int{} // pod ID -> containers that exist
	opts := e.opts
	opts.Hooks.RemoveContainers = func(_ context.Context, id string) error {
		mu.Lock()
		defer mu.Unlock()
		delete(created, id)
		return nil
	}
	m, err := sandbox.NewManager(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		c := podConfig(100+i, false)
		c.NetworkMode, c.IPCMode, c.Sysctls = sandbox.ModeNode, sandbox.ModeNode, nil
		sb, err := m.Run(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				_, release, err := m.Hold(sb.ID)
				if err != nil {
					if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrFailedPrecondition) {
						t.Errorf("Hold: %v", err)
					}
					return
				}
				mu.Lock()
				created[sb.ID]++
				mu.Unlock()
				release()
			}
		}()
		go func() {
			defer wg.Done()
			if err := m.Remove(ctx, sb.ID); err != nil {
				t.Errorf("Remove: %v", err)
			}
		}()
		wg.Wait()
		mu.Lock()
		if n := created[sb.ID]; n != 0 {
			t.Errorf("pod %d: %d containers created in a removed pod", i, n)
		}
		mu.Unlock()
		if _, _, err := m.Hold(sb.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Hold after Remove: %v, want NotFound", err)
		}
		e.checkClean(t, []string{sb.ID})
	}
}

// BenchmarkPodInit measures what a shared PID namespace adds to a pod: starting its init
// (Start) and stopping it (Stop), on host-network pods so that CNI does not dominate.
func BenchmarkPodInit(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	for _, mode := range []sandbox.NamespaceMode{sandbox.ModeContainer, sandbox.ModePod} {
		b.Run(mode.String(), func(b *testing.B) {
			bin := ctrruntime.NewSealedBinary("")
			defer bin.Close()
			inits := sandbox.NewPodInits(filepath.Join(b.TempDir(), "inits"), e.cg, bin)
			opts := e.opts
			opts.Hooks.StartPodInit, opts.Hooks.StopPodInit = inits.Start, inits.Stop
			m, err := sandbox.NewManager(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				c := podConfig(200+i, false)
				c.NetworkMode, c.Sysctls, c.PIDMode = sandbox.ModeNode, nil, mode
				sb, err := m.Run(ctx, c)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Remove(ctx, sb.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
