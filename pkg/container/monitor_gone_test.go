package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/container/spawner"
	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// testMonitorEnv makes the test binary, started by Launch as the pod's monitor, run the
// monitor with cgroupSpawner: a separate process the test can kill, as an operator or the
// OOM killer would.
const testMonitorEnv = "CRI_MINI_TEST_MONITOR"

func TestMain(m *testing.M) {
	if os.Getenv(testMonitorEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "monitor" {
		os.Exit(monitor.Main(os.Args[2:], cgroupSpawner{}))
	}
	os.Exit(m.Run())
}

// cgroupSpawner runs a shell in the container's cgroup that, once started, leaves a child
// behind and becomes a sleep: a container with two processes. It blocks until Start on a
// pipe, and then runs whether it was started or its monitor died, so that a container the
// monitor never started has processes left too.
type cgroupSpawner struct{}

type cgroupProcess struct {
	p     *os.Process
	start *os.File
}

func (cgroupSpawner) Create(_ context.Context, req monitor.SpawnRequest) (monitor.Process, error) {
	var cfg spawner.Config
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", `read -r _ <&3; exec 3<&-; sleep 600 & exec sleep 600`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, req.Stdout, req.Stderr
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return nil, err
	}
	// Placed before it is started, so that its child is in the cgroup too.
	for _, dir := range cfg.CgroupDirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			_ = cmd.Process.Kill()
			_ = w.Close()
			return nil, err
		}
	}
	return &cgroupProcess{p: cmd.Process, start: w}, nil
}

func (p *cgroupProcess) Pid() int { return p.p.Pid }
func (p *cgroupProcess) Start() error {
	if _, err := p.start.Write([]byte("go\n")); err != nil {
		return err
	}
	return p.start.Close()
}
func (p *cgroupProcess) Signal(sig syscall.Signal) error { return p.p.Signal(sig) }
func (p *cgroupProcess) Release() error {
	_ = p.start.Close()
	return p.p.Release()
}

// TestPodOfAKilledMonitorIsRemovable: when a pod's monitor is killed while the daemon runs,
// its containers are reported EXITED 255 "Unknown" with the reason, what is left of them is
// killed, and the pod's containers and the pod can still be stopped and removed, leaving
// nothing behind. The daemon's client used to keep failing on the dead monitor, and the pod
// stayed unremovable until the daemon restarted.
func TestPodOfAKilledMonitorIsRemovable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a container rootfs and creating cgroups need root")
	}
	opts, dir := killableMonitorOptions(t)
	m, err := NewManager(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ids []string
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(dir, "log", "ready.log"))
			t.Logf("monitor log:\n%s", out)
		}
		// Whatever the test left running or mounted.
		if pid := monitorPid(m.monitorDir("ready")); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, c := range m.List() {
			m.killCgroup(c.CgroupPath)
			_ = m.releaseResources(c)
		}
		m.Close()
	})

	if err := m.StartPod(ctx, "ready"); err != nil {
		t.Fatal(err)
	}
	running, err := m.Create(ctx, "ready", Config{Name: "running", Image: "busybox", Command: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, running.ID); err != nil {
		t.Fatal(err)
	}
	created, err := m.Create(ctx, "ready", Config{Name: "created", Image: "busybox", Command: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, running.ID, created.ID)
	// The started one has its two processes, the other its shell waiting to be started.
	pids := append(waitProcs(t, m, running.ID, 2), waitProcs(t, m, created.ID, 1)...)

	monPid := monitorPid(m.monitorDir("ready"))
	if monPid <= 0 {
		t.Fatal("the pod's monitor process was not found")
	}
	if err := syscall.Kill(monPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The manager reaps its monitor (childreap): the pid goes once it did.
	for syscall.Kill(monPid, 0) == nil {
		if ctx.Err() != nil {
			t.Fatal("the killed monitor did not go away")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The running container is watched: it converges to EXITED without a request.
	c := waitState(t, m, running.ID, StateExited)
	checkGoneExit(t, c)
	// kubelet restarts an exited container with a new create, without a stop first: it
	// launches the pod a new monitor at once, not through the dead one.
	again, err := m.Create(ctx, "ready", Config{Name: "again", Image: "busybox", Command: []string{"sleep"}})
	if err != nil {
		t.Fatalf("CreateContainer after the monitor died: %v", err)
	}
	if err := m.Remove(ctx, again.ID); err != nil {
		t.Fatalf("RemoveContainer of the new monitor's container: %v", err)
	}
	if _, _, _, err := m.ExecSync(ctx, running.ID, []string{"true"}, 0); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Errorf("ExecSync in a container of a dead monitor = %v, want a failed precondition", err)
	}
	// The created one is settled by the stop, which must kill its processes.
	if err := m.StopPod(ctx, "ready"); err != nil {
		t.Fatalf("StopPod after the monitor died: %v", err)
	}
	for _, id := range ids {
		c, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		checkGoneExit(t, *c)
		if n := m.killCgroup(c.CgroupPath); n != 0 {
			t.Errorf("container %s: %d processes left in its cgroup after stop", c.Config.Name, n)
		}
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d of a container still runs", pid)
		}
	}
	if err := m.Stop(ctx, running.ID, time.Second); err != nil {
		t.Errorf("second StopContainer: %v", err)
	}

	conts := m.List()
	if err := m.Remove(ctx, running.ID); err != nil {
		t.Fatalf("RemoveContainer after the monitor died: %v", err)
	}
	if err := m.RemovePod(ctx, "ready"); err != nil {
		t.Fatalf("RemovePodSandbox (its containers) after the monitor died: %v", err)
	}
	if n := len(m.List()); n != 0 {
		t.Errorf("%d containers left", n)
	}
	for _, c := range conts {
		if m.o.Cgroups.Exists(c.CgroupPath) {
			t.Errorf("cgroup %s left", c.CgroupPath)
		}
		if _, err := os.Stat(c.RootfsDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("rootfs dir %s left: %v", c.RootfsDir, err)
		}
	}
	if _, err := os.Stat(m.monitorDir("ready")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("monitor dir left: %v", err)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err != nil || bytes.Contains(mi, []byte(" "+dir+"/")) {
		t.Errorf("mounts left under %s (%v)", dir, err)
	}
	var recs int
	_ = m.o.DB.View(func(tx *store.Tx) error {
		return tx.ForEach(bucket, func(string, []byte) error { recs++; return nil })
	})
	if recs != 0 {
		t.Errorf("%d container records left", recs)
	}
}

// killableMonitorOptions are the options of a manager whose pod "ready" gets a monitor the
// test can kill (see testMonitorEnv), in a directory of the test's own; the pod's cgroup
// parent is removed when the test ends.
func killableMonitorOptions(t *testing.T) (Options, string) {
	t.Helper()
	t.Setenv(testMonitorEnv, "1")
	// A short directory: the monitor socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "moncrash")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cgParent := "/cri-mini-test-" + filepath.Base(dir)
	opts := Options{
		DB:            openDB(t, dir),
		Sandboxes:     fakeSandboxes{"ready": {ID: "ready", State: sandbox.StateReady, CgroupParent: cgParent}},
		Images:        layerlessImages{fakeImages{"busybox": {ID: "sha256:abc"}}},
		RootDir:       filepath.Join(dir, "containers"),
		StateDir:      filepath.Join(dir, "mon"),
		MonitorExe:    exe,
		MonitorLogDir: filepath.Join(dir, "log"),
	}
	t.Cleanup(func() { _ = cgroups.New().Remove(cgParent) })
	return opts, dir
}

// TestRestartSettlesContainersOfADeadMonitor: a monitor killed while the daemon was down
// leaves its container's processes running, unsupervised. The restarted daemon reports the
// container EXITED 255 "Unknown" and kills them, before kubelet starts the next instance
// next to them. They used to run on until the container was removed.
func TestRestartSettlesContainersOfADeadMonitor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a container rootfs and creating cgroups need root")
	}
	opts, _ := killableMonitorOptions(t)
	m, err := NewManager(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.StartPod(ctx, "ready"); err != nil {
		t.Fatal(err)
	}
	c, err := m.Create(ctx, "ready", Config{Name: "running", Image: "busybox", Command: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	pids := waitProcs(t, m, c.ID, 2)
	monDir := m.monitorDir("ready")
	t.Cleanup(func() {
		// Whatever a failure left running or mounted.
		if pid := monitorPid(monDir); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		m.killCgroup(c.CgroupPath)
		_ = m.releaseResources(c)
	})
	// The daemon goes away, then the monitor is killed.
	m.Close()
	monPid := monitorPid(monDir)
	if monPid <= 0 {
		t.Fatal("the pod's monitor process was not found")
	}
	if err := syscall.Kill(monPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for alive(monPid) {
		if ctx.Err() != nil {
			t.Fatal("the killed monitor did not go away")
		}
		time.Sleep(10 * time.Millisecond)
	}

	m2, err := NewManager(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range m2.List() {
			m2.killCgroup(c.CgroupPath)
			_ = m2.releaseResources(c)
		}
		m2.Close()
	})
	got, err := m2.Get(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkGoneExit(t, *got)
	// Killed without a wait at start-up: they go as soon as the kernel has taken them down.
	for _, pid := range pids {
		for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d of the container still runs 10 s after the restart", pid)
		}
	}
	if err := m2.RemovePod(ctx, "ready"); err != nil {
		t.Fatalf("RemovePodSandbox (its containers) after the restart: %v", err)
	}
	if n := len(m2.List()); n != 0 {
		t.Errorf("%d containers left", n)
	}
}

func checkGoneExit(t *testing.T, c Container) {
	t.Helper()
	if c.State != StateExited || c.ExitCode != unknownExitCode || c.Reason != ReasonUnknown ||
		!strings.Contains(c.Message, "monitor died") {
		t.Errorf("container %s: %s %d %q %q; want EXITED %d %q, the monitor's death the message",
			c.Config.Name, c.State, c.ExitCode, c.Reason, c.Message, unknownExitCode, ReasonUnknown)
	}
}

// waitProcs waits until the container's cgroup lists n processes and returns them.
func waitProcs(t *testing.T, m *Manager, id string, n int) []int {
	t.Helper()
	c, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := m.o.Cgroups.Dirs(c.CgroupPath)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			var pids []int
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			if len(pids) == n {
				return pids
			}
			break
		}
	}
	t.Fatalf("container %s: not %d processes in its cgroup", c.Config.Name, n)
	return nil
}

func waitState(t *testing.T, m *Manager, id string, want State) Container {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == want || time.Now().After(deadline) {
			return *c
		}
	}
}

// alive reports whether pid runs (a zombie waiting for its new parent to reap it does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// monitorPid finds the monitor serving dir by its command line (0 when none).
func monitorPid(dir string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("\x00--dir\x00"+dir+"\x00")) && alive(pid) {
			return pid
		}
	}
	return 0
}

// TestRestartKeepsContainersOfAStoppedMonitor: a monitor that is alive but does not answer
// when the daemon restarts (stopped here, starved on a loaded node) is not taken for dead:
// its running container stays RUNNING and untouched, and once the monitor answers again
// the container is stopped through it as usual.
func TestRestartKeepsContainersOfAStoppedMonitor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a container rootfs and creating cgroups need root")
	}
	opts, _ := killableMonitorOptions(t)
	m, err := NewManager(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.StartPod(ctx, "ready"); err != nil {
		t.Fatal(err)
	}
	c, err := m.Create(ctx, "ready", Config{Name: "running", Image: "busybox", Command: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	pids := waitProcs(t, m, c.ID, 2)
	monDir := m.monitorDir("ready")
	monPid := monitorPid(monDir)
	if monPid <= 0 {
		t.Fatal("the pod's monitor process was not found")
	}
	t.Cleanup(func() {
		_ = syscall.Kill(monPid, syscall.SIGCONT)
		if pid := monitorPid(monDir); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		m.killCgroup(c.CgroupPath)
		_ = m.releaseResources(c)
	})
	m.Close()
	if err := syscall.Kill(monPid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	m2, err := NewManager(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range m2.List() {
			m2.killCgroup(c.CgroupPath)
			_ = m2.releaseResources(c)
		}
		m2.Close()
	})
	got, err := m2.Get(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateRunning || got.Pid != c.Pid {
		t.Errorf("after a restart with the monitor not answering: %s pid %d, want RUNNING pid %d", got.State, got.Pid, c.Pid)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Errorf("process %d of the container was killed", pid)
		}
	}
	if err := syscall.Kill(monPid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := m2.Stop(ctx, c.ID, 2*time.Second); err != nil {
		t.Fatalf("stop once the monitor answers: %v", err)
	}
	if got := waitState(t, m2, c.ID, StateExited); got.ExitCode == 255 {
		t.Errorf("stopped container reported as lost: %+v", got)
	}
	if err := m2.RemovePod(ctx, "ready"); err != nil {
		t.Fatalf("RemovePodSandbox (its containers): %v", err)
	}
}
