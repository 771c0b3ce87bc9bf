package monitor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWaitReadyEndsOnCancel: a caller that gives up (kubelet cancelling RunPodSandbox) ends
// the wait for a monitor's readiness at once, not at the deadline.
func TestWaitReadyEndsOnCancel(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err = waitReady(ctx, r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("waitReady after a cancel = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("waitReady took %s after a cancel at 50ms", d)
	}
}

// TestRemoveIfSame: an exiting monitor removes its own socket, never the one a newer monitor
// bound at the same path.
func TestRemoveIfSame(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "monitor.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	own, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A newer monitor's socket took the path.
	newer := filepath.Join(dir, "newer")
	if err := os.WriteFile(newer, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newer, path); err != nil {
		t.Fatal(err)
	}
	removeIfSame(path, own)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the newer socket was removed: %v", err)
	}
	cur, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	removeIfSame(path, cur)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("its own socket was not removed: %v", err)
	}
}
