package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClientSeesAKilledMonitorGone: once a monitor is killed (SIGKILL, the OOM killer: its
// socket stays behind), a request on a connection made before fails with ErrGone, and so do
// a new Dial and an attach. A client that only saw its connection break could not tell a
// dead monitor from a dropped connection, and the daemon kept failing on the pod.
func TestClientSeesAKilledMonitorGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, c, pid := startMonitor(t, ctx)
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Launch reaps the monitor: its pid is gone once it is.
	for syscall.Kill(pid, 0) == nil {
		if ctx.Err() != nil {
			t.Fatal("the killed monitor did not go away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(SocketPath(dir)); err != nil {
		t.Fatalf("a killed monitor's socket should stay behind: %v", err)
	}
	if _, err := c.State(ctx, "x"); !errors.Is(err, ErrGone) {
		t.Errorf("request on the old connection = %v, want ErrGone", err)
	}
	if _, err := c.State(ctx, "x"); !errors.Is(err, ErrGone) {
		t.Errorf("second request = %v, want ErrGone", err)
	}
	if _, err := Dial(ctx, SocketPath(dir)); !errors.Is(err, ErrGone) {
		t.Errorf("Dial = %v, want ErrGone", err)
	}
	if _, err := DialAttach(ctx, SocketPath(dir), "x", false); !errors.Is(err, ErrGone) {
		t.Errorf("DialAttach = %v, want ErrGone", err)
	}
	if err := os.Remove(SocketPath(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(ctx, SocketPath(dir)); !errors.Is(err, ErrGone) {
		t.Errorf("Dial without a socket = %v, want ErrGone", err)
	}
}

// TestClientTimeoutIsNotGone: a monitor that answers slowly is not taken for gone.
func TestClientTimeoutIsNotGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c, pid := startMonitor(t, ctx)
	if _, err := c.Create(ctx, "c1", CreateOptions{Config: config("sleep", "60")}); err != nil {
		t.Fatal(err)
	}
	// A stopped monitor accepts connections (the kernel does) but answers nothing.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	for !stopped(pid) {
		if ctx.Err() != nil {
			t.Fatal("the monitor did not stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if _, err := c.State(sctx, "c1"); err == nil || errors.Is(err, ErrGone) {
		t.Errorf("request to a stopped monitor = %v, want a timeout that is not ErrGone", err)
	}
}

// stopped reports whether pid is in the stopped state ("T" in /proc/PID/stat).
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && strings.HasPrefix(rest, "T")
}
