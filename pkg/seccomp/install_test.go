package seccomp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// childEnv makes the test binary, re-executed, install a filter and report (see TestMain):
// a filter cannot be removed, so it must go into a process of its own.
const childEnv = "CRI_MINI_SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

// child installs a filter denying chmod and fchmodat, then prints the result of chmod on
// a file in dir and the Seccomp mode of every thread of the process.
func child(dir string) int {
	if err := Apply(blockChmod()); err != nil {
		fmt.Println("apply:", err)
		return 1
	}
	err := unix.Chmod(filepath.Join(dir, "f"), 0o600)
	fmt.Printf("chmod: %v\n", err)
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, st := range tasks {
		b, _ := os.ReadFile(st)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
				fmt.Printf("thread seccomp: %s\n", strings.TrimSpace(v))
			}
		}
	}
	return 0
}

func TestInstallInChild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing a filter without no_new_privs needs CAP_SYS_ADMIN: run as root")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "chmod: "+unix.EPERM.Error()) {
		t.Errorf("chmod was not denied with EPERM:\n%s", s)
	}
	threads := strings.Count(s, "thread seccomp:")
	if threads < 2 || strings.Count(s, "thread seccomp: 2") != threads {
		t.Errorf("want every thread (more than one) in filter mode 2:\n%s", s)
	}
	// The filter stayed in the child.
	if err := os.Chmod(filepath.Join(dir, "f"), 0o600); err != nil {
		t.Errorf("chmod in the test process: %v", err)
	}
}

func TestApplyNil(t *testing.T) {
	if err := Apply((*specs.LinuxSeccomp)(nil)); err != nil {
		t.Errorf("nil profile: %v", err)
	}
}
