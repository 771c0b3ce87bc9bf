package container

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// cmdSpawner runs the Config (a JSON argv) as an ordinary child at once; Start is a no-op.
// The in-process monitor of these tests does not reap: attach only needs the output to end.
type cmdSpawner struct{}

type cmdProcess struct{ p *os.Process }

func (cmdSpawner) Create(_ context.Context, req monitor.SpawnRequest) (monitor.Process, error) {
	var args []string
	if err := json.Unmarshal(req.Config, &args); err != nil || len(args) == 0 {
		return nil, errors.New("bad test config")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, req.Stdout, req.Stderr
	if req.TTY {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &cmdProcess{p: cmd.Process}, nil
}

func (p *cmdProcess) Pid() int                        { return p.p.Pid }
func (p *cmdProcess) Start() error                    { return nil }
func (p *cmdProcess) Signal(sig syscall.Signal) error { return p.p.Signal(sig) }
func (p *cmdProcess) Release() error                  { return nil }

// startTestMonitor serves a monitor in this process in a short directory (sun_path).
func startTestMonitor(t *testing.T) (string, *monitor.Server) {
	t.Helper()
	dir, err := os.MkdirTemp("", "att")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv := monitor.NewServer(dir, cmdSpawner{})
	l, err := net.Listen("unix", monitor.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return dir, srv
}

// lockedBuffer collects output written by the attach copier.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Close() error { return nil }

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestAttach(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, openDB(t, dir), dir)
	monDir, srv := startTestMonitor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name       string
		state      State
		inMonitor  bool
		tty, stdin bool
		args       []string
		input      string
		cancel     bool // cancel the attach instead of waiting for the output to end
		stdout     string
		stderr     string
		want       error
	}{
		{name: "pipes", state: StateRunning, inMonitor: true, stdin: true,
			args: []string{"sh", "-c", `read -r l; echo "o:$l"; echo "e:$l" >&2`}, input: "x\n",
			stdout: "o:x\n", stderr: "e:x\n"},
		// Without stdin, read ends at once: the pause lets the attach connect before the
		// output it checks is written (attach shows only what comes after it connects).
		{name: "no stdin configured", state: StateRunning, inMonitor: true,
			args: []string{"sh", "-c", `read -r l; sleep 1; echo "got:$l"`}, input: "dropped\n", stdout: "got:\n"},
		{name: "tty", state: StateRunning, inMonitor: true, tty: true, stdin: true,
			args: []string{"sh", "-c", `read -r l; echo "o:$l"; echo "e:$l" >&2`}, input: "y\n",
			stdout: "y\r\no:y\r\ne:y\r\n"},
		{name: "client leaves", state: StateRunning, inMonitor: true, stdin: true,
			args: []string{"sleep", "30"}, cancel: true, want: context.Canceled},
		{name: "not running", state: StateCreated, inMonitor: true, args: []string{"true"},
			want: store.ErrFailedPrecondition},
		{name: "unknown to the monitor", state: StateRunning, want: store.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			if tc.inMonitor {
				raw, _ := json.Marshal(tc.args)
				if _, err := srv.Create(ctx, id, monitor.CreateOptions{TTY: tc.tty, Stdin: tc.stdin, Config: raw}); err != nil {
					t.Fatal(err)
				}
				if tc.cancel {
					t.Cleanup(func() { _, _ = srv.Signal(ctx, id, syscall.SIGKILL) })
				}
			}
			m.mu.Lock()
			m.byID[id] = &entry{rec: Container{ID: id, PodSandboxID: "ready", State: tc.state, MonitorDir: monDir,
				Config: Config{Name: id, TTY: tc.tty, Stdin: tc.stdin}}}
			m.mu.Unlock()
			var stdout, stderr lockedBuffer
			actx, acancel := context.WithCancel(ctx)
			defer acancel()
			if tc.cancel {
				time.AfterFunc(300*time.Millisecond, acancel)
			}
			s := StreamIO{Stdin: strings.NewReader(tc.input), Stdout: &stdout, Stderr: &stderr, TTY: tc.tty}
			start := time.Now()
			err := m.Attach(actx, id, s)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Attach = %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Attach took %v", d)
			}
			if stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("stdout %q stderr %q, want %q and %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
			}
		})
	}
	if err := m.Attach(ctx, "nope", StreamIO{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("attach to an unknown container = %v, want not found", err)
	}
}
