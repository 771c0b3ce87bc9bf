// Package monitor is the per-pod monitor: one small process per pod that is the parent of the
// pod's containers, owns their stdio, writes their CRI logs, records their exits and outlives
// daemon restarts; and the daemon's side of it (Launch, Client).
package monitor

import (
	"context"
	"encoding/json"
	"os"
	"syscall"
)

// SpawnRequest is what the monitor asks a Spawner to create for one container.
type SpawnRequest struct {
	ID string
	// Dir is the container's state directory, owned by the monitor; the spawner may keep
	// files there (it is removed with the container).
	Dir string
	// Config is the runtime's own description of the container (OCI spec, rootfs, ...). The
	// monitor passes it through unread, so the protocol does not change when it grows.
	Config json.RawMessage
	// TTY reports that Stdin, Stdout and Stderr are the same terminal.
	TTY bool
	// The child's ends of its stdio. The spawner must dup them into the child and not keep
	// them: the monitor closes its copies after Create returns.
	Stdin, Stdout, Stderr *os.File
}

// Process is a container's first process as created by a Spawner: it exists (it has a pid
// the monitor reaps) but does not run the container's command until Start.
type Process interface {
	Pid() int
	// Start lets the process run the container's command.
	Start() error
	// Signal sends sig to the process. It must not signal a recycled pid after the process
	// was reaped (use a pidfd), since the monitor reaps with wait4(-1).
	Signal(sig syscall.Signal) error
	// Release frees what the spawner holds for the process (sync pipes, pidfds). It is
	// called once, after the process was reaped or when creation is rolled back.
	Release() error
}

// OOMReporter is implemented by a Process that can tell whether the kernel's OOM killer
// killed it during this run (the spawner knows the container's cgroup, the monitor does not).
type OOMReporter interface {
	OOMKilled() bool
}

// Spawner creates container processes. The monitor reaps every child with wait4(-1) itself,
// so a spawner must never wait for the processes it creates.
type Spawner interface {
	Create(ctx context.Context, req SpawnRequest) (Process, error)
}
