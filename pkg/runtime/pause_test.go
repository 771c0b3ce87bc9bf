package runtime

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFindAndStopPause checks that a recorded pause is recognised by PID and start time
// only (a recycled PID is not it), and that StopPause ends it and reports it gone.
func TestFindAndStopPause(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	start, err := startTicks(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    PauseProcess
		ok   bool
	}{
		{"recorded", PauseProcess{Pid: cmd.Process.Pid, StartTime: start}, true},
		{"pid reused", PauseProcess{Pid: cmd.Process.Pid, StartTime: start + 1}, false},
		{"pid unused", PauseProcess{Pid: 1 << 22, StartTime: start}, false},
	}
	for _, tc := range tests {
		fd, ok, err := FindPause(tc.p)
		if err != nil || ok != tc.ok {
			t.Errorf("%s: ok %v err %v, want ok %v", tc.name, ok, err, tc.ok)
		}
		if ok {
			_ = unix.Close(fd)
		}
	}
	fd, ok, err := FindPause(tests[0].p)
	if err != nil || !ok {
		t.Fatalf("FindPause: %v %v", ok, err)
	}
	defer unix.Close(fd)
	if err := StopPause(context.Background(), fd, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("process still running after StopPause")
	}
	if _, ok, _ := FindPause(tests[0].p); ok {
		t.Error("FindPause finds a stopped pause")
	}
	// Stopping what is already gone is not an error.
	if err := StopPause(context.Background(), fd, time.Second); err != nil {
		t.Errorf("second StopPause: %v", err)
	}
}
