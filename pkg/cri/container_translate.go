package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// ContainerManager runs the containers; *container.Manager implements it. Get and List
// must answer from memory.
type ContainerManager interface {
	Create(ctx context.Context, podID string, cfg container.Config) (*container.Container, error)
	Start(ctx context.Context, idOrPrefix string) error
	Stop(ctx context.Context, idOrPrefix string, timeout time.Duration) error
	Remove(ctx context.Context, idOrPrefix string) error
	ReopenLog(ctx context.Context, idOrPrefix string) error
	Get(idOrPrefix string) (*container.Container, error)
	List() []*container.Container
	ExecSync(ctx context.Context, idOrPrefix string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error)
	ContainerResourceManager // container_update.go, container_stats.go
}

// containers returns the configured manager, or an error saying the daemon was built
// without one (only possible in tests that wire a partial server).
func (s *Server) containers() (ContainerManager, error) {
	if s.opts.Containers == nil {
		return nil, fmt.Errorf("containers: no container manager configured: %w", store.ErrFailedPrecondition)
	}
	return s.opts.Containers, nil
}

// containerConfig translates a CreateContainer config. It checks only what the domain
// cannot express (nil messages, required fields); the manager validates the values.
func containerConfig(cfg *runtimeapi.ContainerConfig) (container.Config, error) {
	if cfg == nil {
		return container.Config{}, invalidArg("config", "required")
	}
	md := cfg.GetMetadata()
	if md == nil {
		return container.Config{}, invalidArg("config.metadata", "required")
	}
	if md.GetName() == "" {
		return container.Config{}, invalidArg("config.metadata.name", "must not be empty")
	}
	if cfg.GetImage().GetImage() == "" {
		return container.Config{}, invalidArg("config.image.image", "must not be empty")
	}
	c := container.Config{
		Name:        md.GetName(),
		Attempt:     md.GetAttempt(),
		Image:       cfg.GetImage().GetImage(),
		Command:     cfg.GetCommand(),
		Args:        cfg.GetArgs(),
		WorkingDir:  cfg.GetWorkingDir(),
		Labels:      maps.Clone(cfg.GetLabels()),
		Annotations: maps.Clone(cfg.GetAnnotations()),
		LogPath:     cfg.GetLogPath(),
		TTY:         cfg.GetTty(),
		Stdin:       cfg.GetStdin(),
		StdinOnce:   cfg.GetStdinOnce(),
	}
	for i, kv := range cfg.GetEnvs() {
		if kv.GetKey() == "" {
			return container.Config{}, invalidArg(fmt.Sprintf("config.envs[%d].key", i), "must not be empty")
		}
		c.Env = append(c.Env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	for i, mnt := range cfg.GetMounts() {
		if mnt.GetContainerPath() == "" {
			return container.Config{}, invalidArg(fmt.Sprintf("config.mounts[%d].container_path", i), "must not be empty")
		}
		c.Mounts = append(c.Mounts, runtime.Mount{
			ContainerPath: mnt.GetContainerPath(),
			HostPath:      mnt.GetHostPath(),
			Readonly:      mnt.GetReadonly(),
			Propagation:   runtime.Propagation(mnt.GetPropagation()),

			RecursiveReadOnly: mnt.GetRecursiveReadOnly(),
		})
	}
	if err := checkRecursiveReadOnly(cfg.GetMounts()); err != nil {
		return container.Config{}, err
	}
	for _, d := range cfg.GetDevices() {
		c.Devices = append(c.Devices, runtime.Device{
			ContainerPath: d.GetContainerPath(), HostPath: d.GetHostPath(), Permissions: d.GetPermissions(),
		})
	}
	lx := cfg.GetLinux()
	if sc := lx.GetSecurityContext(); sc != nil {
		if u := sc.GetRunAsUser(); u != nil {
			v := u.GetValue()
			c.RunAsUser = &v
		}
		c.RunAsUsername = sc.GetRunAsUsername()
		if g := sc.GetRunAsGroup(); g != nil {
			v := g.GetValue()
			c.RunAsGroup = &v
		}
		// A group without a user is ambiguous (the image's user with another group?); the
		// CRI asks runtimes to refuse it.
		if c.RunAsGroup != nil && c.RunAsUser == nil && c.RunAsUsername == "" {
			return container.Config{}, invalidArg("config.linux.security_context.run_as_group", "set without run_as_user or run_as_username")
		}
		for _, g := range sc.GetSupplementalGroups() {
			c.SupplementalGroups = append(c.SupplementalGroups, uint32(g))
		}
		if err := securityContext(sc, &c); err != nil {
			return container.Config{}, err
		}
		var err error
		if c.Namespaces, err = containerNamespaces(sc.GetNamespaceOptions()); err != nil {
			return container.Config{}, err
		}
	}
	if err := idmappedMounts(cfg.GetMounts(), c.Namespaces.User, c.Mounts); err != nil {
		return container.Config{}, err
	}
	res, adj, err := linuxResources(lx.GetResources(), "config.linux.resources")
	if err != nil {
		return container.Config{}, err
	}
	c.Resources, c.OOMScoreAdj = res, adj
	prof, err := seccompProfile(lx.GetSecurityContext())
	if err != nil {
		return container.Config{}, err
	}
	c.Seccomp = prof
	return c, nil
}

func toContainerState(s container.State) runtimeapi.ContainerState {
	switch s {
	case container.StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case container.StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case container.StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func toContainer(c *container.Container) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.PodSandboxID,
		Metadata:     &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
		Image:        &runtimeapi.ImageSpec{Image: c.Config.Image},
		ImageRef:     c.ImageRef,
		ImageId:      c.ImageID,
		State:        toContainerState(c.State),
		CreatedAt:    unixNano(c.CreatedAt),
		Labels:       maps.Clone(c.Config.Labels),
		Annotations:  maps.Clone(c.Config.Annotations),
	}
}

func toContainerStatus(c *container.Container) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
		State:       toContainerState(c.State),
		CreatedAt:   unixNano(c.CreatedAt),
		StartedAt:   unixNano(c.StartedAt),
		Image:       &runtimeapi.ImageSpec{Image: c.Config.Image},
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageID,
		Labels:      maps.Clone(c.Config.Labels),
		Annotations: maps.Clone(c.Config.Annotations),
		LogPath:     c.LogPath,
		Resources:   containerResources(c),
		User:        containerUser(c),
	}
	if c.State == container.StateExited {
		st.FinishedAt = unixNano(c.FinishedAt)
		st.ExitCode = c.ExitCode
		st.Reason = c.Reason
		st.Message = c.Message
	}
	for _, mnt := range c.Config.Mounts {
		st.Mounts = append(st.Mounts, &runtimeapi.Mount{
			ContainerPath: mnt.ContainerPath,
			HostPath:      mnt.HostPath,
			Readonly:      mnt.Readonly,
			Propagation:   runtimeapi.MountPropagation(mnt.Propagation),

			RecursiveReadOnly: mnt.RecursiveReadOnly,
		})
	}
	return st
}

// containerInfo is ContainerStatus's verbose info, in the shape crictl prints.
func containerInfo(c *container.Container) (map[string]string, error) {
	b, err := json.Marshal(struct {
		SandboxID   string `json:"sandboxID"`
		Pid         int    `json:"pid"`
		RuntimeSpec any    `json:"runtimeSpec"`
	}{c.PodSandboxID, c.Pid, c.Spec})
	if err != nil {
		return nil, fmt.Errorf("encode verbose info of container %s: %w", c.ID, err)
	}
	return map[string]string{"info": string(b)}, nil
}
