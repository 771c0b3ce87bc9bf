// Package spawner is the monitor's side of the container manager: it creates container
// processes with the built-in runtime from the spec the daemon built. It is a package of
// its own so that the monitor binary links the runtime and not the daemon's packages.
package spawner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// Config is what the daemon sends through the monitor to the Spawner: the container's
// full OCI spec, built once in the daemon (the rootfs is already mounted at spec.Root.Path
// and the cgroup at spec.Linux.CgroupsPath already exists). The monitor passes it unread.
type Config struct {
	Spec *specs.Spec `json:"spec"`
	// CgroupPath is spec.Linux.CgroupsPath, so that the monitor need not parse the spec
	// for it ("" without a cgroup).
	CgroupPath string `json:"cgroupPath,omitempty"`
	// CgroupDirs are the directories of spec.Linux.CgroupsPath (cgroups.Manager.Dirs) as
	// the daemon resolved them when it created the cgroup: the monitor would otherwise
	// resolve them itself, reading the mount table in every new monitor process.
	CgroupDirs map[string]string `json:"cgroupDirs,omitempty"`
}

// Spawner creates container processes with the built-in runtime; the monitor runs it
// (cri-mini monitor). It implements monitor.Spawner.
type Spawner struct{}

var _ monitor.Spawner = (*Spawner)(nil)

// Create spawns the container's init, blocked until Start. The rootfs and cgroup belong to
// the daemon (it created them and removes them with the container), so the runtime is told
// it does not own them.
//
// The spec goes to the init as the daemon encoded it: the monitor does not decode it (see
// runtime.CreateJSON), and the init clamps oom_score_adj to what it may set itself.
func (s *Spawner) Create(ctx context.Context, req monitor.SpawnRequest) (monitor.Process, error) {
	var cfg rawConfig
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return nil, fmt.Errorf("decode spawn config of container %s: %w", req.ID, err)
	}
	if len(cfg.Spec) == 0 {
		return nil, fmt.Errorf("spawn config of container %s: no spec", req.ID)
	}
	var (
		cg  runtime.Cgroups // nil interface when the container has no cgroup
		oom oomBaseline
	)
	if p := cfg.CgroupPath; p != "" {
		dirs, err := newCgroupDirs(p, cfg.CgroupDirs)
		if err != nil {
			return nil, fmt.Errorf("spawn config of container %s: %w", req.ID, err)
		}
		cg, oom = dirs, newOOMBaseline(dirs, p)
	}
	stdio := runtime.Stdio{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr}
	c, err := runtime.CreateJSON(ctx, cfg.Spec, stdio, cg)
	if err != nil {
		return nil, fmt.Errorf("built-in runtime: %w", err)
	}
	return &process{c: c, pid: c.Pid, oom: oom}, nil
}

// rawConfig is Config with the spec left encoded (its Spec shadows Config's).
type rawConfig struct {
	Config
	Spec json.RawMessage `json:"spec"`
}

// process adapts a runtime.Container to monitor.Process.
type process struct {
	mu  sync.Mutex
	c   *runtime.Container // nil once released
	pid int
	oom oomBaseline
}

func (p *process) container() *runtime.Container {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.c
}

func (p *process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (p *process) Start() error {
	c := p.container()
	if c == nil {
		return fmt.Errorf("start pid %d: %w", p.Pid(), os.ErrProcessDone)
	}
	// The monitor bounds its own requests; the runtime's Start returns as soon as the init
	// reports the execve's outcome.
	return c.Start(context.Background())
}

func (p *process) Signal(sig syscall.Signal) error {
	c := p.container()
	if c == nil {
		return nil
	}
	// The runtime signals through a pidfd, so a pid the monitor already reaped and the
	// kernel recycled is never hit; a process that is gone needs no signal.
	if err := c.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Release drops the reference to the runtime's process: its pidfd and sync socket are
// closed by the runtime on start or by the garbage collector with the process, and the
// monitor reaps the process itself (the runtime's Wait must never be called here).
func (p *process) Release() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.c = nil
	return nil
}

// OOMKilled reports whether the kernel's OOM killer acted in the container's cgroup
// since the process was created (see oomBaseline).
func (p *process) OOMKilled() bool { return p.oom.killedSince() }
