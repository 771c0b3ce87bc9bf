package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/container/spawner"
	"github.com/cri-mini/cri-mini/pkg/image"
	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// Create creates a container in the pod: rootfs overlay over the image's layers, cgroup
// leaf under the pod cgroup, the OCI spec, and the process (held before its command) in
// the pod's monitor. The container is visible to Get and List only once it is CREATED; on
// any error everything done is undone with a context of its own and the name is released.
func (m *Manager) Create(ctx context.Context, podID string, cfg Config) (_ *Container, retErr error) {
	logger := klog.FromContext(ctx)
	if cfg.Name == "" {
		return nil, fmt.Errorf("container name: empty: %w", store.ErrInvalidArgument)
	}
	if cfg.Image == "" {
		return nil, fmt.Errorf("container image: empty: %w", store.ErrInvalidArgument)
	}
	if err := m.validateResources(cfg.Resources); err != nil {
		return nil, err
	}
	// Held until the container is published (or undone): a concurrent Stop or Remove of the
	// pod waits, then stops or removes it; RemoveImage refuses the image meanwhile.
	sb, releasePod, err := m.o.Sandboxes.Hold(podID)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %s: %w", podID, err)
	}
	defer releasePod()
	nsPaths, err := m.namespacePaths(sb, cfg.Namespaces)
	if err != nil {
		return nil, err
	}
	if err := checkPrivileged(cfg, sb); err != nil {
		return nil, err
	}
	img, releaseImage, err := m.o.Images.Use(cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", cfg.Image, err)
	}
	defer releaseImage()
	stopSig, err := parseSignal(img.Config.StopSignal)
	if err != nil {
		return nil, fmt.Errorf("stop signal of image %s: %w", cfg.Image, err)
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	key := nameKey(sb.ID, cfg.Name, cfg.Attempt)
	if err := m.reserve(key, id); err != nil {
		return nil, err
	}
	var undo []func(context.Context) error
	recorded := false
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.CleanupTimeout)
		defer cancel()
		failed := false
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](cctx); err != nil {
				failed = true
				logger.Error(err, "Undoing failed container create", "containerID", id)
			}
		}
		// The CREATING record is what lets the next start-up finish an undo that failed
		// (a busy mount); it goes only when everything it describes is gone.
		if recorded && !failed {
			if err := m.deleteRecord(id); err != nil {
				logger.Error(err, "Undoing failed container create", "containerID", id)
			}
		}
		m.release(key, id)
	}()

	c := Container{
		ID: id, PodSandboxID: sb.ID, Config: cfg, State: StateCreating, CreatedAt: time.Now(),
		ImageID: img.ID, ImageRef: imageRef(img), StopSignal: int(stopSig),
		RootfsDir: filepath.Join(m.o.RootDir, id), MonitorDir: m.monitorDir(sb.ID),
	}
	if sb.Config.LogDir != "" && cfg.LogPath != "" {
		c.LogPath = filepath.Join(sb.Config.LogDir, cfg.LogPath)
	}
	if sb.CgroupParent != "" {
		c.CgroupPath = path.Join(sb.CgroupParent, id)
	}
	// The record comes first: if the daemon dies below, start-up finds CREATING and undoes
	// whatever side effects exist.
	if err := m.put(&c); err != nil {
		return nil, err
	}
	recorded = true
	undo = append(undo, func(context.Context) error { return m.releaseResources(&c) })

	spec, cgroupDirs, err := m.prepare(ctx, sb, nsPaths, img, &c)
	if err != nil {
		return nil, err
	}
	c.Spec = spec
	if c.LogPath != "" {
		// kubelet creates the pod's log directory; a container log path may add a level.
		if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("create log directory of container %s: %w", id, err)
		}
	}
	raw, err := json.Marshal(spawner.Config{Spec: spec, CgroupPath: spec.Linux.CgroupsPath, CgroupDirs: cgroupDirs})
	if err != nil {
		return nil, fmt.Errorf("encode spawn config of container %s: %w", id, err)
	}
	cl, _, err := m.monitorClient(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	st, err := monitorCreate(ctx, cl, id, monitor.CreateOptions{
		LogPath: c.LogPath, TTY: cfg.TTY, Stdin: cfg.Stdin, StdinOnce: cfg.StdinOnce, Config: raw,
	})
	if err != nil {
		if errors.Is(err, monitor.ErrGone) {
			// The pod's monitor died: the next create launches it a new one.
			m.dropClient(ctx, sb.ID, cl, err)
		}
		return nil, err
	}
	undo = append(undo, func(ctx context.Context) error { return m.monitorRemove(ctx, &c) })
	// A caller that gave up meanwhile is told so: the undo removes the process again.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	c.Pid = st.Pid
	c.State = StateCreated
	if err := m.put(&c); err != nil {
		return nil, err
	}
	m.publishCreated(c)
	m.stats.layers.get(m.ctx, id, upperDir(c.RootfsDir), &m.wg) // the first walk, while the layer is empty (fsusage.go)
	logger.V(2).Info("Container created", "containerID", id, "podSandboxID", sb.ID, "image", cfg.Image, "pid", st.Pid)
	out := c
	return &out, nil
}

// publishCreated makes the created container visible and reports it. Its event lock is
// taken before it is in the index, so a Start that finds it reports after this.
func (m *Manager) publishCreated(c Container) {
	e := &entry{rec: c}
	e.ev.Lock()
	defer e.ev.Unlock()
	m.mu.Lock()
	m.byID[c.ID] = e
	m.mu.Unlock()
	m.emit(EventCreated, c)
}

// prepare mounts the rootfs, resolves the user, creates the cgroup and builds the spec; it
// returns the spec and the cgroup's directories (nil without a cgroup). Its side effects
// are undone by releaseResources.
func (m *Manager) prepare(ctx context.Context, sb *sandbox.Sandbox, nsPaths runtime.SandboxPaths, img *image.Image, c *Container) (*specs.Spec, map[string]string, error) {
	base, dirs, err := m.o.Images.LowerDirs(img.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("layers of image %s: %w", img.ID, err)
	}
	rootfs, err := mountRootfs(sb, base, dirs, c.RootfsDir)
	if err != nil {
		return nil, nil, fmt.Errorf("mount rootfs of container %s: %w", c.ID, err)
	}
	resolve := runtime.ResolveUser
	if c.Config.SupplementalGroupsStrict {
		resolve = runtime.ResolveUserStrict
	}
	user, err := resolve(rootfs.Path, userSpec(c.Config, img.Config.User), c.Config.SupplementalGroups)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve user of container %s: %w: %w", c.ID, err, store.ErrInvalidArgument)
	}
	cfg := c.Config
	sec, err := securityOptions(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("security context of container %s: %w", c.ID, err)
	}
	spec, err := runtime.BuildSpec(runtime.SpecOptions{
		Image: runtime.ImageConfig{
			Env: img.Config.Env, Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd,
			WorkingDir: img.Config.WorkingDir, User: img.Config.User,
		},
		Container: runtime.ContainerConfig{
			Command: cfg.Command, Args: cfg.Args, Env: cfg.Env, WorkingDir: cfg.WorkingDir,
			Mounts: cfg.Mounts, Devices: cfg.Devices, TTY: cfg.TTY,
		},
		Sandbox:     nsPaths,
		Hostname:    sb.Hostname,
		Rootfs:      rootfs.Path,
		CgroupsPath: c.CgroupPath,
		User:        user,
		CgroupNS:    m.o.Cgroups.IsV2(),
		Security:    sec,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("build spec of container %s: %w: %w", c.ID, err, store.ErrInvalidArgument)
	}
	// After BuildSpec: the capability-dependent rules of the default profile read the
	// spec's bounding set.
	if err := setSeccomp(spec, c.Config); err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", c.ID, err)
	}
	applyResourcesToSpec(spec, cfg, runtime.OOMScoreAdjFloor()) // the init clamps to its own floor again
	var cgroupDirs map[string]string
	if c.CgroupPath != "" {
		// After the spec: the cgroup's device rules come from it.
		if cgroupDirs, _, err = m.o.Cgroups.CreateDirs(c.CgroupPath, cgroupResources(cfg, spec)); err != nil {
			return nil, nil, fmt.Errorf("create cgroup of container %s: %w", c.ID, err)
		}
	}
	return spec, cgroupDirs, nil
}

// mountRootfs mounts the container's rootfs, idmapped into the pod's user namespace when
// the pod has one: the image's files are then its root's.
func mountRootfs(sb *sandbox.Sandbox, base string, layers []string, dir string) (*runtime.Rootfs, error) {
	if sb.UsernsPath == "" {
		return runtime.MountRootfs(base, layers, dir)
	}
	uid, gid, ok := sb.RootHostIDs()
	if !ok {
		return nil, fmt.Errorf("pod sandbox %s has a user namespace without a mapping of root: %w", sb.ID, store.ErrFailedPrecondition)
	}
	return runtime.MountRootfsUserNS(base, layers, dir, runtime.UserNamespace{Path: sb.UsernsPath, UID: int(uid), GID: int(gid)})
}

// userSpec is the user the container runs as, in ResolveUser's syntax.
func userSpec(cfg Config, imageUser string) string {
	var u string
	switch {
	case cfg.RunAsUsername != "":
		u = cfg.RunAsUsername
	case cfg.RunAsUser != nil:
		u = strconv.FormatInt(*cfg.RunAsUser, 10)
	default:
		return imageUser
	}
	if cfg.RunAsGroup != nil {
		u += ":" + strconv.FormatInt(*cfg.RunAsGroup, 10)
	}
	return u
}

// imageRef is what ContainerStatus reports as image_ref: a repo digest when the image
// has one, else its ID.
func imageRef(img *image.Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

// parseSignal parses an image's StopSignal ("SIGTERM", "TERM", "15"); empty is SIGTERM.
func parseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGTERM, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d out of range", n)
		}
		return syscall.Signal(n), nil
	}
	name := s
	if len(name) < 3 || name[:3] != "SIG" {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

func (m *Manager) reserve(key, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if other, ok := m.names[key]; ok {
		return fmt.Errorf("container name %s is reserved for %s: %w", key, other, store.ErrAlreadyExists)
	}
	m.names[key] = id
	return nil
}

func (m *Manager) release(key, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.names[key] == id {
		delete(m.names, key)
	}
}

func (m *Manager) deleteRecord(id string) error {
	if err := m.o.DB.Update(func(tx *store.Tx) error { return tx.Delete(bucket, id) }); err != nil {
		return fmt.Errorf("delete record of container %s: %w", id, err)
	}
	return nil
}

// releaseResources unmounts and removes the rootfs and removes the cgroup; both steps are
// idempotent. They are independent and mostly wait in the kernel, so they run together:
// RemoveContainer would otherwise wait for their sum.
func (m *Manager) releaseResources(c *Container) error {
	var (
		wg    sync.WaitGroup
		cgErr error
	)
	if c.CgroupPath != "" {
		wg.Go(func() {
			if err := m.removeCgroup(c.CgroupPath); err != nil {
				cgErr = fmt.Errorf("remove cgroup of container %s: %w", c.ID, err)
			}
		})
	}
	var errs []error
	if err := runtime.RemoveRootfs(c.RootfsDir); err != nil {
		errs = append(errs, fmt.Errorf("remove rootfs of container %s: %w", c.ID, err))
	}
	wg.Wait()
	return errors.Join(append(errs, cgErr)...)
}

// removeCgroup retries briefly: right after the init is reaped the kernel may still list
// the other processes of its PID namespace, and rmdir fails while it does. That lasts a
// millisecond or two, so the wait starts at 1 ms and doubles up to 20 ms (about 1 s in all).
//
// A busy cgroup fails at once (TryRemove): the library's own removal retries rmdir of a
// busy cgroup for about a second in each hierarchy (eleven on v1), so a container that left
// processes behind (one without a PID namespace of its own) took 11 s per attempt, and a
// RemoveContainer close to a minute, before they were killed.
func (m *Manager) removeCgroup(p string) error {
	var err error
	wait := time.Millisecond
	for i := 0; i < 55; i++ {
		if err = m.o.Cgroups.TryRemove(p); err == nil {
			return nil
		}
		if i >= 4 {
			// Still busy after a 15 ms grace: processes the init left behind.
			m.killCgroup(p)
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
	return err
}

// monitorCreate creates container id's process in the pod's monitor.
//
// The monitor finishes a create it has received even when the daemon stops waiting for the
// answer, so the request is not cut short when the caller gives up (kubelet or crictl
// cancelling on a timeout): with the caller's context Create's undo ran without knowing of
// the process, and the monitor kept it, and its log file, until the pod was removed. Create
// still returns the cancellation, once the undo can remove the process.
func monitorCreate(ctx context.Context, cl *monitor.Client, id string, opts monitor.CreateOptions) (monitor.ContainerState, error) {
	if err := ctx.Err(); err != nil {
		return monitor.ContainerState{}, fmt.Errorf("create container %s: %w", id, err)
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), monitor.DefaultTimeout)
	defer cancel()
	st, err := cl.Create(mctx, id, opts)
	if err != nil {
		return st, fmt.Errorf("create container %s in monitor: %w", id, err)
	}
	return st, nil
}

// monitorRemove makes the pod's monitor forget the container (killing it if it never
// started). A monitor that is gone or does not know it is fine: what is left of the
// container dies with its cgroup (releaseResources).
func (m *Manager) monitorRemove(ctx context.Context, c *Container) error {
	cl := m.existingClient(c.PodSandboxID)
	if cl == nil {
		return nil
	}
	err := cl.Remove(ctx, c.ID)
	switch {
	case err == nil, errors.Is(err, monitor.ErrNotFound), errors.Is(err, monitor.ErrShuttingDown):
		return nil
	case errors.Is(err, monitor.ErrGone):
		m.dropClient(ctx, c.PodSandboxID, cl, err)
		return nil
	}
	return fmt.Errorf("remove container %s from monitor: %w", c.ID, err)
}

// cleanupCreating undoes a create the daemon did not finish.
func (m *Manager) cleanupCreating(ctx context.Context, c *Container) error {
	if st := m.reconnectOne(ctx, c); st {
		_ = m.monitorRemove(ctx, c)
	}
	if err := m.releaseResources(c); err != nil {
		return err
	}
	return m.deleteRecord(c.ID)
}

// reconnectOne makes sure the pod's monitor client exists if its monitor still runs.
func (m *Manager) reconnectOne(ctx context.Context, c *Container) bool {
	if m.existingClient(c.PodSandboxID) != nil {
		return true
	}
	if m.knownPod(c.PodSandboxID) != nil {
		return false
	}
	states, _ := m.reconnect(ctx, c.PodSandboxID, c.MonitorDir)
	return states != nil
}
