package container

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestSignalCaught(t *testing.T) {
	plain := exec.Command("sleep", "60")
	trapper := exec.Command("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
	for _, c := range []*exec.Cmd{plain, trapper} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	// The shell installs its trap a moment after it starts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		caught, err := signalCaught(trapper.Process.Pid, syscall.SIGTERM)
		if err != nil {
			t.Fatal(err)
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell's SIGTERM trap never showed in SigCgt")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if caught, err := signalCaught(plain.Process.Pid, syscall.SIGTERM); err != nil || caught {
		t.Fatalf("sleep: caught = %v, %v; want false", caught, err)
	}
	if _, err := signalCaught(1<<30, syscall.SIGTERM); err == nil {
		t.Fatal("a pid that does not exist gave no error")
	}
}
