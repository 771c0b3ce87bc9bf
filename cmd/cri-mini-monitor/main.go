// Command cri-mini-monitor is the per-pod monitor, container init, exec helper and pod init
// (pause) without
// the daemon: the same code as `cri-mini monitor|init|exec-helper`, linked without gRPC,
// protobuf, the CRI types, the image, CNI and cgroup libraries. Go runs the init of every
// linked package and keeps their tables for the life of the process, and a monitor lives as
// long as its pod: this binary is what the daemon starts per pod when it finds it next to
// itself (make build puts it there). Every container init is this binary too, so what it
// links is paid again at each CreateContainer. Measured with cribench podmem (10 idle
// pods): 0.95 MiB of private memory and 0.36 MiB of shared text and data per monitor.
package main

import (
	"fmt"
	"os"
	goruntime "runtime"

	"github.com/cri-mini/cri-mini/pkg/container/spawner"
	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// The main goroutine stays on the main thread (DESIGN.md section 5), and no memory
// profiling: its sampled stacks and bucket table are paid in every monitor and never read.
func init() {
	goruntime.LockOSThread()
	goruntime.MemProfileRate = 0
}

func main() {
	cmd := ""
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch cmd {
	case "monitor":
		os.Exit(monitor.Main(os.Args[2:], &spawner.Spawner{}))
	case runtime.InitCommand:
		os.Exit(runtime.InitMain())
	case runtime.ExecHelperCommand:
		os.Exit(runtime.ExecHelperMain())
	case runtime.PauseCommand:
		os.Exit(runtime.PauseMain())
	case ns.HoldCommand:
		os.Exit(ns.HoldMain())
	default:
		fmt.Fprintf(os.Stderr, "cri-mini-monitor: started by cri-mini only (subcommands monitor, %s, %s, %s, %s)\n",
			runtime.InitCommand, runtime.ExecHelperCommand, runtime.PauseCommand, ns.HoldCommand)
		os.Exit(2)
	}
}
