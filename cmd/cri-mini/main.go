// Command cri-mini is a Kubernetes CRI runtime: one static binary that is the daemon and, as
// hidden subcommands, the per-pod monitor, the container init and the pod pause process.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/cri-mini/cri-mini/pkg/container/spawner"
	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/ns"
	ctrruntime "github.com/cri-mini/cri-mini/pkg/runtime"
)

// Stamped at build time with -ldflags "-X main.version=... -X main.gitCommit=...".
var (
	version   = "dev"
	gitCommit = "unknown"
)

// Lock the main goroutine to the main thread before anything else runs. Goroutines that join
// pod namespaces lock their own threads; without this, one of them can land on the main thread,
// which the Go runtime never destroys, and leave the daemon itself inside a pod's network
// namespace (DESIGN.md section 5).
func init() {
	runtime.LockOSThread()
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := ""
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "", "daemon":
		return runDaemon(args)
	case "monitor": // the per-pod monitor, started by the container manager
		return monitor.Main(args, &spawner.Spawner{})
	case ctrruntime.InitCommand: // container init, started by the runtime's Create
		return ctrruntime.InitMain()
	case ctrruntime.ExecHelperCommand: // joins a running container, started by Exec
		return ctrruntime.ExecHelperMain()
	case ctrruntime.PauseCommand: // PID 1 of a shared-PID pod, started by RunPodSandbox
		return ctrruntime.PauseMain()
	case ns.HoldCommand: // holds a new pod user namespace until pinned, started by RunPodSandbox
		return ns.HoldMain()
	case "config":
		return runConfig(args)
	case "images":
		return runImages(args, os.Stdout, os.Stderr)
	case "version":
		fmt.Printf("cri-mini %s (commit %s, %s)\n", version, gitCommit, runtime.Version())
		return 0
	case "help":
		usage()
		return 0
	default:
		fmt.Fprintf(os.Stderr, "cri-mini: unknown command %q\n", cmd)
		usage()
		return 2
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `Usage:
  cri-mini [daemon] [flags]   serve the CRI on a unix socket (flags: cri-mini daemon -h)
  cri-mini config default     print the full default configuration, commented
  cri-mini images import|list load images into the store, or list them (cri-mini images help)
  cri-mini version            print the version
`)
}
