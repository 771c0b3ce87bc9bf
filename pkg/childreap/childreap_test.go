package childreap

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func threads(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc/self/task: %v", err)
	}
	return len(ents)
}

// state is the process state letter of pid ("" once the pid is gone).
func state(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2 : i+3]
	}
	return "?"
}

func TestReapHoldsNoThreadAndReaps(t *testing.T) {
	const n = 20
	before := threads(t)
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("sleep", "1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		Reap(cmd.Process)
		cmds = append(cmds, cmd)
	}
	time.Sleep(200 * time.Millisecond) // let the reapers start and park
	// A goroutine in Wait per child would hold about n threads here.
	if grown := threads(t) - before; grown >= n/2 {
		t.Errorf("threads grew by %d while %d children run", grown, n)
	}
	for _, cmd := range cmds {
		pid := cmd.Process.Pid
		deadline := time.Now().Add(10 * time.Second)
		for st := state(pid); st != ""; st = state(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("child %d still there (state %s) after it exited", pid, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestReapOfAnExitedChild(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	for state(pid) != "Z" { // exited, not reaped yet
		time.Sleep(5 * time.Millisecond)
	}
	Reap(cmd.Process)
	deadline := time.Now().Add(10 * time.Second)
	for state(pid) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("zombie %d not reaped", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
