// Package e2e drives a real cri-mini daemon over its CRI socket.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// binary is the cri-mini binary under test: $CRI_MINI_BIN, or built once for this test run.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipping all tests: the daemon needs root (namespaces, mounts, cgroups)")
		return 0
	}
	binary = os.Getenv("CRI_MINI_BIN")
	if binary == "" {
		dir, err := os.MkdirTemp("", "cri-mini-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "cri-mini")
		_, file, _, _ := runtime.Caller(0)
		build := exec.Command("go", "build", "-o", binary, "./cmd/cri-mini")
		build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build cri-mini: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}
