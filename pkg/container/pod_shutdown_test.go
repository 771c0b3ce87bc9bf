package container

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/monitor"
)

// TestRemovePodStopsTheMonitorAfterCancel: a RemovePodSandbox whose caller already gave up
// still stops the pod's monitor; it used to take the failed dial for "no monitor".
func TestRemovePodStopsTheMonitorAfterCancel(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, openDB(t, dir), dir)
	const podID = "cancelled-pod-0123456789"
	monDir := m.podFor(podID).dir
	if err := os.MkdirAll(monDir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv := monitor.NewServer(monDir, cmdSpawner{})
	l, err := net.Listen("unix", monitor.SocketPath(monDir))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		defer close(served)
		_ = srv.Serve(sctx, l)
		_ = os.Remove(monitor.SocketPath(monDir)) // as the monitor process does on exit
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.RemovePod(ctx, podID); err != nil {
		t.Fatalf("RemovePod with a cancelled context = %v", err)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("the monitor was not shut down")
	}
}
