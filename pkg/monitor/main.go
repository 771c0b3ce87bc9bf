package monitor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/idlefree"
	"k8s.io/klog/v2"
)

// Memory settings of the monitor process; its private memory is paid once per pod. The
// heap of a monitor is a few hundred KiB, so a low GC percentage costs little CPU, and the
// soft limit makes the runtime return freed pages promptly.
const (
	gcPercent   = 25
	memoryLimit = 4 << 20
)

// Main runs the monitor: `cri-mini monitor --pod ID --dir DIR [--ready-fd N]`. It returns
// the process exit code. sp creates the containers' processes.
func Main(args []string, sp Spawner) int {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	pod := fs.String("pod", "", "pod sandbox ID")
	dir := fs.String("dir", "", "state directory of the pod's monitor (socket, exit records)")
	readyFD := fs.Int("ready-fd", -1, "descriptor to write \"ready\" to once serving (set by Launch)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pod == "" || *dir == "" {
		fmt.Fprintln(os.Stderr, "cri-mini monitor: --pod and --dir are required")
		return 2
	}
	tune()
	log := klog.Background().WithValues("podSandboxID", *pod)
	ctx := klog.NewContext(context.Background(), log)
	var ready *os.File
	if *readyFD >= 0 {
		ready = os.NewFile(uintptr(*readyFD), "ready")
	}
	if err := run(ctx, *dir, sp, ready); err != nil {
		log.Error(err, "Monitor failed")
		if ready != nil {
			_, _ = fmt.Fprintf(ready, "error: %v\n", err)
		}
		return 1
	}
	return 0
}

// tune keeps the monitor's footprint small (see memoryLimit). One P is enough: the monitor
// is I/O bound, and fewer Ps mean fewer idle per-P caches.
func tune() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

func run(ctx context.Context, dir string, sp Spawner, ready *os.File) error {
	// Subreaper: processes a container leaves behind are reparented here, not to the host's
	// init, so they stay inside the pod's accounting and are reaped by ReapLoop.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create monitor directory %s: %w", dir, err)
	}
	l, err := listen(SocketPath(dir))
	if err != nil {
		return err
	}
	own, _ := os.Stat(SocketPath(dir))
	defer removeIfSame(SocketPath(dir), own)
	s := NewServer(dir, sp)
	// The monitor is idle nearly all its life: give back what each burst of work freed, once
	// the runtime has collected (a forced first collection costs more than it frees).
	idle := idlefree.NewAfterCollection(time.Second)
	defer idle.Stop()
	s.onActivity = idle.Touch
	reapCtx, stopReap := context.WithCancel(ctx)
	reaped := make(chan struct{})
	go func() { defer close(reaped); s.ReapLoop(reapCtx) }()

	// SIGTERM/SIGINT end the pod the same way a shutdown request does.
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	// The daemon side may be gone when we exit; nobody reads our stdio or a tty hangup.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	if ready != nil {
		_, _ = ready.WriteString("ready\n")
		_ = ready.Close()
	}
	klog.FromContext(ctx).V(2).Info("Monitor serving", "socket", SocketPath(dir))
	err = s.Serve(sigCtx, l)
	if sigCtx.Err() != nil && ctx.Err() == nil {
		s.KillAll(ctx, 10*time.Second)
	}
	stopReap()
	<-reaped
	return err
}

// listen creates the socket, readable only by root (0600): whoever can connect controls
// the pod's containers.
func listen(path string) (net.Listener, error) {
	// sun_path holds 108 bytes including the NUL.
	if len(path) > 107 {
		return nil, fmt.Errorf("monitor socket path %s is longer than 107 bytes", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale monitor socket %s: %w", path, err)
	}
	// The socket is made by hand rather than with net.Listen, which reads
	// /proc/sys/net/core/somaxconn through a 64 KiB buffer: garbage that a monitor, which
	// seldom collects, would keep resident for the pod's life. Only the daemon connects.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("monitor socket %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // net.FileListener works on a duplicate
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("bind monitor socket %s: %w", path, err)
	}
	// Restricted before it listens: nobody else can connect in between.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("restrict monitor socket %s: %w", path, err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listen on monitor socket %s: %w", path, err)
	}
	l, err := net.FileListener(f)
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listen on monitor socket %s: %w", path, err)
	}
	return l, nil
}

// removeIfSame removes path if it is still the file own describes. A monitor exits some
// time after it stops serving (it kills its containers first): if the daemon found it gone
// meanwhile and launched the pod a new monitor, the path is that one's socket now.
func removeIfSame(path string, own os.FileInfo) {
	if cur, err := os.Stat(path); err == nil && own != nil && os.SameFile(own, cur) {
		_ = os.Remove(path)
	}
}

// listenBacklog: the daemon holds one connection per pod, plus one per request in flight.
const listenBacklog = 64
