package container

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// layerlessImages is fakeImages whose images have no layers, so that Create can mount a
// rootfs (over an empty lower directory).
type layerlessImages struct{ fakeImages }

func (layerlessImages) LowerDirs(string) (string, []string, error) { return "", nil, nil }

// hookSpawner runs `sleep` for every container. It calls onCreate before the process
// exists and onStart before it is let run, the moments a test cancels its caller at.
type hookSpawner struct {
	onCreate, onStart func()
}

type hookProcess struct {
	p       *os.Process
	onStart func()
}

func (s hookSpawner) Create(_ context.Context, req monitor.SpawnRequest) (monitor.Process, error) {
	if s.onCreate != nil {
		s.onCreate()
	}
	cmd := exec.Command("sleep", "60")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, req.Stdout, req.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &hookProcess{p: cmd.Process, onStart: s.onStart}, nil
}

func (p *hookProcess) Pid() int { return p.p.Pid }
func (p *hookProcess) Start() error {
	if p.onStart != nil {
		p.onStart()
	}
	return nil
}
func (p *hookProcess) Signal(sig syscall.Signal) error { return p.p.Signal(sig) }
func (p *hookProcess) Release() error                  { return nil }

// newCancelTestManager returns a manager whose pod "ready" is served by an in-process
// monitor with sp, which reaps its children as the monitor process does.
func newCancelTestManager(t *testing.T, sp monitor.Spawner) (*Manager, *monitor.Server) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a container rootfs needs root")
	}
	// A short directory: the monitor socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "cancel")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	m, err := NewManager(context.Background(), Options{
		DB:        openDB(t, dir),
		Sandboxes: fakeSandboxes{"ready": {ID: "ready", State: sandbox.StateReady}},
		Images:    layerlessImages{fakeImages{"busybox": {ID: "sha256:abc"}}},
		RootDir:   filepath.Join(dir, "containers"),
		StateDir:  filepath.Join(dir, "mon"),
	})
	if err != nil {
		t.Fatal(err)
	}
	monDir := m.monitorDir("ready")
	if err := os.MkdirAll(monDir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv := monitor.NewServer(monDir, sp)
	l, err := net.Listen("unix", monitor.SocketPath(monDir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served, reaped := make(chan struct{}), make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ctx, l) }()
	go func() { defer close(reaped); srv.ReapLoop(ctx) }()
	t.Cleanup(func() {
		// Whatever the test left: the monitor kills it, then the manager lets go of it.
		srv.KillAll(context.Background(), 5*time.Second)
		m.Close()
		stop()
		<-served
		<-reaped
		for _, c := range m.List() {
			_ = m.releaseResources(c)
		}
	})
	return m, srv
}

var sleepConfig = Config{Name: "c", Image: "busybox", Command: []string{"sleep", "60"},
	Namespaces: NamespaceOptions{PID: sandbox.ModeContainer}}

// TestCreateCancelledRemovesTheMonitorsContainer: a CreateContainer whose caller gives up
// while the monitor is creating the process leaves nothing in the monitor. The monitor
// finishes the create regardless; the undo used to leave it there, a process and its log
// that nothing would remove before the pod went.
func TestCreateCancelledRemovesTheMonitorsContainer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spawned := make(chan struct{})
	m, srv := newCancelTestManager(t, hookSpawner{onCreate: func() {
		cancel()
		// Long enough for a caller that does not wait to be gone.
		time.Sleep(100 * time.Millisecond)
		close(spawned)
	}})
	_, err := m.Create(ctx, "ready", sleepConfig)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a cancelled caller = %v, want context.Canceled", err)
	}
	select {
	case <-spawned:
	case <-time.After(10 * time.Second):
		t.Fatal("the monitor never created the process")
	}
	// The monitor publishes the container right after its process exists.
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l := srv.List(); len(l) != 0 {
			t.Fatalf("the monitor still holds the container of the failed create: %+v", l)
		}
	}
	if len(m.List()) != 0 || len(m.names) != 0 {
		t.Fatalf("failed create left containers %d, names %v", len(m.List()), m.names)
	}
}

// TestStartCancelledRecordsTheRunningContainer: a StartContainer whose caller gives up while
// the monitor is starting the container still records it RUNNING. The monitor starts it
// regardless; the record used to stay CREATED, unwatched, and kubelet, seeing a container
// that never ran, started another instance of it next to the one running.
func TestStartCancelledRecordsTheRunningContainer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, srv := newCancelTestManager(t, hookSpawner{onStart: func() {
		cancel()
		time.Sleep(100 * time.Millisecond)
	}})
	c, err := m.Create(context.Background(), "ready", sleepConfig)
	if err != nil {
		t.Fatal(err)
	}
	startErr := m.Start(ctx, c.ID)
	st, err := srv.State(c.ID)
	if err != nil || st.Status != monitor.StatusRunning {
		t.Fatalf("monitor state %+v, %v; want running", st, err)
	}
	got, err := m.Get(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateRunning || got.Pid != st.Pid {
		t.Fatalf("Start = %v; record %s pid %d, the monitor runs it as pid %d", startErr, got.State, got.Pid, st.Pid)
	}
	if err := m.Remove(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
}

// TestStartAfterCancelDoesNothing: a StartContainer whose caller is gone before anything
// was asked of the monitor returns the cancellation and leaves the container CREATED.
func TestStartAfterCancelDoesNothing(t *testing.T) {
	m, srv := newCancelTestManager(t, hookSpawner{})
	c, err := m.Create(context.Background(), "ready", sleepConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Start(ctx, c.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context = %v, want context.Canceled", err)
	}
	if st, err := srv.State(c.ID); err != nil || st.Status != monitor.StatusCreated {
		t.Fatalf("monitor state %+v, %v; want created", st, err)
	}
	if got, err := m.Get(c.ID); err != nil || got.State != StateCreated {
		t.Fatalf("record %+v, %v; want CREATED", got, err)
	}
}
