package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"
)

// ErrStarted is returned by Start for a process that was already started.
var ErrStarted = errors.New("container already started")

// Create spawns the container's init: from a thread that joined the namespaces the spec
// names (the pod's net/ipc/uts, a shared pid namespace), in new PID and mount namespaces,
// inside the cgroup spec.Linux.CgroupsPath (which must exist; "" keeps the caller's). The
// init sets up the rootfs (already mounted at spec.Root.Path, see MountRootfs) and then
// waits: the container is CREATED until Start. cgm may be nil when CgroupsPath is "".
// rootfs may be nil when the caller owns the rootfs; otherwise Delete removes it.
func Create(ctx context.Context, spec *specs.Spec, rootfs *Rootfs, stdio Stdio, cgm Cgroups) (*Container, error) {
	if spec == nil || spec.Process == nil || spec.Root == nil || spec.Linux == nil {
		return nil, fmt.Errorf("create container: the spec needs process, root and linux")
	}
	v := specView{Process: &viewProcess{Terminal: spec.Process.Terminal, Args: spec.Process.Args},
		Root: &viewRoot{Path: spec.Root.Path}, Linux: &viewLinux{CgroupsPath: spec.Linux.CgroupsPath, Namespaces: spec.Linux.Namespaces}}
	v.mounts = spec.Mounts
	c, err := create(ctx, &v, childConfig{Spec: spec}, nil, stdio, cgm)
	if err != nil {
		return nil, err
	}
	c.Spec, c.Rootfs = spec, rootfs
	return c, nil
}

// CreateJSON is Create for a spec in its JSON form, which is handed to the init as it is.
// A monitor creates each container from the spec the daemon sent and needs only a few of
// its fields: decoding the whole spec there and encoding it again for the init cost a few
// milliseconds per container in a fresh process (encoding/json builds its per-type tables
// on first use). The container's Spec is decoded when first needed (Exec). The caller owns
// the rootfs.
func CreateJSON(ctx context.Context, spec json.RawMessage, stdio Stdio, cgm Cgroups) (*Container, error) {
	var v specView
	if err := json.Unmarshal(spec, &v); err != nil {
		return nil, fmt.Errorf("create container: decode spec: %w", err)
	}
	if v.Process == nil || v.Root == nil || v.Linux == nil {
		return nil, fmt.Errorf("create container: the spec needs process, root and linux")
	}
	raw := make([]byte, 0, len(spec)+len(`{"spec":}`)+1)
	raw = append(append(append(raw, `{"spec":`...), spec...), "}\n"...)
	c, err := create(ctx, &v, childConfig{}, raw, stdio, cgm)
	if err != nil {
		return nil, err
	}
	c.rawSpec = spec
	return c, nil
}

// specView is the part of a spec the parent side of Create reads.
type specView struct {
	Process *viewProcess `json:"process"`
	Root    *viewRoot    `json:"root"`
	Linux   *viewLinux   `json:"linux"`
	// Mounts are decoded only for a container in a user namespace (mountSources needs
	// them); mounts is Create's spec's, or their decoding.
	Mounts json.RawMessage `json:"mounts,omitempty"`
	mounts []specs.Mount
}

type viewProcess struct {
	Terminal bool     `json:"terminal,omitempty"`
	Args     []string `json:"args,omitempty"`
}

type viewRoot struct {
	Path string `json:"path"`
}

type viewLinux struct {
	CgroupsPath string                 `json:"cgroupsPath,omitempty"`
	Namespaces  []specs.LinuxNamespace `json:"namespaces,omitempty"`
}

// create spawns the init with cfg, or rawCfg when it is set (cfg already in JSON).
func create(ctx context.Context, v *specView, cfg childConfig, rawCfg []byte, stdio Stdio, cgm Cgroups) (*Container, error) {
	if len(v.Process.Args) == 0 {
		return nil, fmt.Errorf("create container: empty process args")
	}
	if v.Linux.CgroupsPath != "" && cgm == nil {
		return nil, fmt.Errorf("create container: cgroup %s given without a cgroup manager", v.Linux.CgroupsPath)
	}
	paths, flags, userns, err := specNamespaces(v.Linux.Namespaces)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	var sources []*os.File
	if userns != "" {
		var index map[int]int
		if v.mounts == nil && len(v.Mounts) > 0 {
			if err := json.Unmarshal(v.Mounts, &v.mounts); err != nil {
				return nil, fmt.Errorf("create container: decode mounts: %w", err)
			}
		}
		if sources, index, err = mountSources(v.mounts, userns); err != nil {
			return nil, fmt.Errorf("create container: %w", err)
		}
		defer closeFiles(sources)
		if rawCfg != nil {
			rawCfg = withMountSources(rawCfg, index)
		} else {
			cfg.MountSources = index
		}
	}
	p, err := spawn(ctx, spawnOptions{
		command:    InitCommand,
		extra:      sources,
		ns:         paths,
		cloneflags: flags,
		userns:     userns,
		stdio:      stdio,
		terminal:   v.Process.Terminal,
		cgroupPath: v.Linux.CgroupsPath,
		cgm:        cgm,
		config:     cfg,
		rawConfig:  rawCfg,
	})
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	if err := p.waitReady(ctx); err != nil {
		p.kill()
		_, _ = p.Wait()
		_ = p.sync.Close()
		return nil, fmt.Errorf("create container: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Container created", "pid", p.Pid, "rootfs", v.Root.Path)
	return &Container{Process: p}, nil
}

// Container is a created container: its init process (PID 1 of its PID namespace, once
// started the container's own program), its spec and its rootfs.
type Container struct {
	*Process
	// Spec is nil for a container made by CreateJSON until spec decodes it.
	Spec   *specs.Spec
	Rootfs *Rootfs

	rawSpec json.RawMessage // CreateJSON's spec
	specMu  sync.Mutex      // guards Spec's lazy decoding
}

// spec returns the container's spec, decoding CreateJSON's on first use.
func (c *Container) spec() (*specs.Spec, error) {
	c.specMu.Lock()
	defer c.specMu.Unlock()
	if c.Spec == nil && c.rawSpec != nil {
		var s specs.Spec
		if err := json.Unmarshal(c.rawSpec, &s); err != nil {
			return nil, fmt.Errorf("decode spec: %w", err)
		}
		c.Spec = &s
	}
	return c.Spec, nil
}

// Start lets the init execute the container's program and returns once it did (or failed
// to: a missing binary, a permission error). Only a CREATED container can be started.
func (c *Container) Start(ctx context.Context) error {
	p := c.Process
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sync == nil {
		return ErrStarted
	}
	defer func() {
		_ = p.sync.Close()
		p.sync = nil
	}()
	if err := writeMsg(p.sync, message{Type: msgStart}); err != nil {
		return fmt.Errorf("start container pid %d: %w", p.Pid, err)
	}
	// The init's end of the socket is close-on-exec: EOF means the execve succeeded.
	m, err := readMsg(p.dec)
	switch {
	case errors.Is(err, errChildGone):
		klog.FromContext(ctx).V(2).Info("Container started", "pid", p.Pid)
		return nil
	case err != nil:
		return fmt.Errorf("start container pid %d: %w", p.Pid, err)
	case m.Type == msgError:
		return fmt.Errorf("start container pid %d: %s", p.Pid, m.Error)
	}
	return fmt.Errorf("start container pid %d: unexpected %q message", p.Pid, m.Type)
}

// Delete kills the container if it still runs (SIGKILL to its PID 1 takes down its whole
// PID namespace), reaps it, unmounts and removes its rootfs and removes its cgroup. It can
// be called again after a partial failure.
func (c *Container) Delete(ctx context.Context) error {
	p := c.Process
	select {
	case <-p.done:
	default:
		if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("delete container: %w", err)
		}
		if _, err := p.Wait(); err != nil {
			return fmt.Errorf("delete container: %w", err)
		}
	}
	p.mu.Lock()
	if p.sync != nil {
		_ = p.sync.Close()
		p.sync = nil
	}
	p.mu.Unlock()
	var errs []error
	if c.Rootfs != nil {
		if err := RemoveRootfs(c.Rootfs.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if p.cgroupPath != "" {
		if err := removeCgroup(p.cgm, p.cgroupPath); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete container pid %d: %w", p.Pid, err)
	}
	klog.FromContext(ctx).V(2).Info("Container deleted", "pid", p.Pid)
	return nil
}

// removeCgroup retries briefly: after the init is reaped, the kernel may still be tearing
// down the other processes of the PID namespace, and rmdir fails while they are listed.
func removeCgroup(cgm Cgroups, path string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = cgm.Remove(path); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}
