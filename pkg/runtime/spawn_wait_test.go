package runtime

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWaitAfterAnotherReaper: in the monitor, a reap loop waits for every child with
// wait4(-1), so a failed create's Wait can find its process already reaped. Wait must then
// return (with an error), not crash the monitor.
func TestWaitAfterAnotherReaper(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(cmd.Process.Pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	p := &Process{Pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	if _, err := p.Wait(); err == nil {
		t.Fatal("Wait of a process reaped by someone else reported no error")
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Wait")
	}
}
