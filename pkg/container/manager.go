package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/image"
	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

const bucket = "containers"

// Sandboxes is the part of the sandbox manager containers need; *sandbox.Manager is one.
type Sandboxes interface {
	Get(idOrPrefix string) (*sandbox.Sandbox, error)
	// Hold returns a READY sandbox and keeps it from being stopped or removed until release.
	Hold(idOrPrefix string) (sb *sandbox.Sandbox, release func(), err error)
}

// Images is the part of the image store containers need; *image.Service is one.
type Images interface {
	// Use resolves ref and keeps the image from being removed until release.
	Use(ref string) (img *image.Image, release func(), err error)
	LowerDirs(id string) (base string, dirs []string, err error)
}

// Options configure a Manager.
type Options struct {
	DB        *store.DB
	Sandboxes Sandboxes
	Images    Images
	// PodInits locates the shared PID namespace of pods that have one; nil gives every
	// container of such a pod a PID namespace of its own.
	PodInits PodInits
	// Cgroups manages the containers' cgroups; nil means cgroups.New().
	Cgroups *cgroups.Manager
	// RootDir holds the containers' writable layers (RootDir/<id>/{upper,work,rootfs}).
	RootDir string
	// StateDir holds the monitors' directories (StateDir/<pod id>), volatile.
	StateDir string
	// MonitorExe and MonitorArgs start a monitor (see monitor.LaunchOptions); empty means
	// this executable's "monitor" subcommand.
	MonitorExe  string
	MonitorArgs []string
	// MonitorBinary, used when MonitorExe is empty, is the sealed copy of the binary monitors
	// run from (cri-mini-monitor: the monitor, init and exec helper without the daemon's
	// packages, a third of the memory per pod); nil means this executable. Every monitor,
	// and each monitor's container inits and exec helpers, run from that one copy instead of
	// copying the binary per spawn. The caller owns it (the pod inits share it).
	MonitorBinary *runtime.SealedBinary
	// MonitorCgroup, when set, is the cgroup (created if missing, shared by all monitors)
	// the monitors are moved into, so that they are not in the daemon's: a restart of the
	// daemon's service kills everything in its cgroup, and monitors must outlive it.
	MonitorCgroup string
	// MonitorLogDir receives each monitor's stderr as <pod id>.log; empty discards it.
	MonitorLogDir string
	// CleanupTimeout bounds each undo step run after a failure; default 1 minute.
	CleanupTimeout time.Duration
	// Events, when set, is told of every lifecycle change once it is recorded. It is
	// called synchronously by the goroutine that made the change, without the manager's
	// index or record locks, and must not block: a slow consumer would hold up Start,
	// Stop and the exit watchers.
	Events func(Event)
}

// Manager owns every container of the node. It is safe for concurrent use.
type Manager struct {
	o Options

	mu        sync.RWMutex
	byID      map[string]*entry
	names     map[string]string     // nameKey → container ID, including containers being created
	pods      map[string]*pod       // pod sandbox ID → its monitor
	stats     statsState            // CPU samples and writable layer cache (stats.go)
	ownBinary *runtime.SealedBinary // the copy of this executable made when Options has none

	// ctx ends the background watchers when the manager closes.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type entry struct {
	op sync.Mutex   // serialises Start/Stop/Remove of this container
	ex sync.Mutex   // serialises recording the exit (the watcher and Stop both may)
	ev sync.Mutex   // orders this container's events (commit)
	mu sync.RWMutex // guards rec
	// rec is replaced, never mutated in place, so a reader's copy stays consistent.
	rec Container
}

func (e *entry) get() Container {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.rec
}

func (e *entry) set(c Container) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rec = c
}

// NewManager loads the container records and reconciles them with the monitors: a
// container its monitor reports running is RUNNING; one with an exit record is EXITED with
// its code; one that neither knows is EXITED 255 "Unknown". Records of interrupted creates
// are cleaned up.
func NewManager(ctx context.Context, o Options) (*Manager, error) {
	if o.DB == nil || o.Sandboxes == nil || o.Images == nil || o.RootDir == "" || o.StateDir == "" {
		return nil, fmt.Errorf("container manager: database, sandboxes, images, root and state dirs are required")
	}
	if o.Cgroups == nil {
		o.Cgroups = cgroups.New()
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = time.Minute
	}
	if err := traversableDir(o.RootDir); err != nil {
		return nil, err
	}
	m := &Manager{o: o, byID: map[string]*entry{}, names: map[string]string{}, pods: map[string]*pod{}}
	if m.o.MonitorBinary == nil {
		m.ownBinary = runtime.NewSealedBinary("")
		m.o.MonitorBinary = m.ownBinary
	}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := m.recover(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close stops the background watchers and closes the monitor connections. Containers and
// monitors keep running: they outlive the daemon.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
	// Not under m.mu: shutdownMonitor takes a pod's lock, then m.mu.
	m.mu.Lock()
	pods := make([]*pod, 0, len(m.pods))
	for _, p := range m.pods {
		pods = append(pods, p)
	}
	m.mu.Unlock()
	for _, p := range pods {
		p.close()
	}
	if m.ownBinary != nil {
		m.ownBinary.Close()
	}
}

func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate container ID: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// put stores c in one transaction.
func (m *Manager) put(c *Container) error {
	if err := m.o.DB.Update(func(tx *store.Tx) error { return tx.Put(bucket, c.ID, c) }); err != nil {
		return fmt.Errorf("store container %s: %w", c.ID, err)
	}
	return nil
}

// lookup resolves a full ID or unique prefix to its entry.
func (m *Manager) lookup(idOrPrefix string) (*entry, error) {
	if idOrPrefix == "" {
		return nil, fmt.Errorf("container ID: empty: %w", store.ErrInvalidArgument)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if e, ok := m.byID[idOrPrefix]; ok {
		return e, nil
	}
	var found *entry
	for id, e := range m.byID {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != nil {
				return nil, fmt.Errorf("container ID prefix %q is ambiguous: %w", idOrPrefix, store.ErrNotFound)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("container %s: %w", idOrPrefix, store.ErrNotFound)
	}
	return found, nil
}

// Get returns a copy of the container with the given ID or unique ID prefix, from memory.
func (m *Manager) Get(idOrPrefix string) (*Container, error) {
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return nil, err
	}
	c := e.get()
	return &c, nil
}

// List returns copies of all containers, oldest first, from memory.
func (m *Manager) List() []*Container {
	m.mu.RLock()
	out := make([]*Container, 0, len(m.byID))
	for _, e := range m.byID {
		c := e.get()
		out = append(out, &c)
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// ImageInUse reports whether a container (in any state) uses the image: it keeps the
// image's layers mounted as its rootfs.
func (m *Manager) ImageInUse(imageID string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, e := range m.byID {
		if e.get().ImageID == imageID {
			return true
		}
	}
	return false
}

// containersOf returns the IDs of the pod's containers.
func (m *Manager) containersOf(podID string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var ids []string
	for id, e := range m.byID {
		if e.get().PodSandboxID == podID {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// monitorDirIDLen is how much of the pod ID names its monitor dir: the socket path inside
// must fit in sun_path (108 bytes), and 80 bits of a random ID do not collide.
const monitorDirIDLen = 20

// monitorDir is the state directory of the pod's monitor. Records keep the path they were
// created with, so changing the scheme never loses a running monitor.
func (m *Manager) monitorDir(podID string) string {
	return filepath.Join(m.o.StateDir, podID[:min(len(podID), monitorDirIDLen)])
}

// exitedFrom returns c marked EXITED according to rec (nil: unknown exit).
func exitedFrom(c Container, rec *monitor.ExitRecord) Container {
	c.State = StateExited
	if rec == nil {
		c.ExitCode = unknownExitCode
		c.Reason = ReasonUnknown
		c.Message = "the container's exit was not recorded"
		if c.FinishedAt.IsZero() {
			c.FinishedAt = time.Now()
		}
		return c
	}
	c.ExitCode = int32(rec.ExitCode)
	c.FinishedAt = rec.FinishedAt
	switch {
	case rec.OOMKilled:
		c.Reason = ReasonOOMKilled
	case rec.ExitCode == 0:
		c.Reason = ReasonCompleted
	default:
		c.Reason = ReasonError
	}
	return c
}

// markExited records the container's exit (once: a later call keeps the first record).
func (m *Manager) markExited(ctx context.Context, e *entry, rec *monitor.ExitRecord) error {
	return m.markExitedWhy(ctx, e, rec, "")
}

// markExitedWhy is markExited with the message reported for an unknown exit (rec nil);
// empty keeps exitedFrom's.
func (m *Manager) markExitedWhy(ctx context.Context, e *entry, rec *monitor.ExitRecord, unknown string) error {
	e.ex.Lock()
	defer e.ex.Unlock()
	cur := e.get()
	if cur.State == StateExited {
		return nil
	}
	c := exitedFrom(cur, rec)
	if rec == nil && unknown != "" {
		c.Message = unknown
	}
	if err := m.put(&c); err != nil {
		return err
	}
	m.commit(e, c, EventStopped)
	klog.FromContext(ctx).V(2).Info("Container exited", "containerID", c.ID, "exitCode", c.ExitCode, "reason", c.Reason)
	return nil
}

// recover loads the records and reconciles them with the monitors.
func (m *Manager) recover(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	var recs map[string]*Container
	err := m.o.DB.View(func(tx *store.Tx) (err error) {
		// A corrupt record is left in the database for inspection.
		recs, err = store.LoadAll(tx, bucket,
			func(id string, c *Container) bool { return c.ID == id },
			func(id string, err error) { logger.Error(err, "Skipping corrupt container record", "containerID", id) })
		return err
	})
	if err != nil {
		return err
	}
	states := map[string]map[string]monitor.ContainerState{} // pod → container → state
	gone := map[string]bool{}                                // pods whose monitor is known dead
	var creating, running []Container
	for _, cp := range recs {
		c := *cp
		if c.State == StateCreating {
			creating = append(creating, c)
			continue
		}
		if _, ok := states[c.PodSandboxID]; !ok && (c.State == StateCreated || c.State == StateRunning) {
			states[c.PodSandboxID], gone[c.PodSandboxID] = m.reconnect(ctx, c.PodSandboxID, c.MonitorDir)
		}
		e := &entry{rec: c}
		switch {
		case c.State != StateCreated && c.State != StateRunning:
		case states[c.PodSandboxID] == nil && !gone[c.PodSandboxID]:
			// The monitor lives but did not answer in time (stopped, or starved on a loaded
			// node): the container keeps its recorded state, and a RUNNING one is watched,
			// which settles it once the monitor answers. Reporting it EXITED would make
			// kubelet start another instance next to one that may still run.
			logger.Info("Monitor of pod does not answer; its container keeps its recorded state", "containerID", c.ID, "podSandboxID", c.PodSandboxID, "state", c.State)
		case gone[c.PodSandboxID]:
			// What the monitor left runs on unsupervised: killed before kubelet, seeing the
			// container EXITED, starts its next instance next to it. SIGKILL without the
			// wait: start-up must not wait on a process stuck in uninterruptible sleep.
			m.killCgroup(c.CgroupPath)
			m.exitFromDiskWhy(ctx, e, monitorDiedMessage)
		default:
			m.reconcile(ctx, e, states[c.PodSandboxID])
		}
		m.byID[c.ID] = e
		m.names[nameKey(c.PodSandboxID, c.Config.Name, c.Config.Attempt)] = c.ID
		if e.get().State == StateRunning {
			running = append(running, e.get())
		}
	}
	// Watched once the index is whole: a watcher reads it (lookup) while this loop writes it.
	for _, c := range running {
		m.watch(c)
	}
	// After the others: their pass connects to each live monitor once, and these reuse
	// that connection (a connection made here first would be replaced there and leak).
	for i := range creating {
		c := &creating[i]
		logger.Info("Cleaning up container whose creation was interrupted", "containerID", c.ID)
		if err := m.cleanupCreating(ctx, c); err != nil {
			logger.Error(err, "Cleaning up interrupted container", "containerID", c.ID)
		}
	}
	m.stopOrphanMonitors(ctx)
	return nil
}

// stopOrphanMonitors shuts down the monitors of pods that no longer exist. RunPodSandbox
// starts the pod's monitor before the network is up: a daemon killed then leaves a monitor
// that the sandbox's own recovery (which removes the half-made pod) knows nothing of.
// Monitor directories are named by a pod ID prefix, which Sandboxes.Get resolves.
func (m *Manager) stopOrphanMonitors(ctx context.Context) {
	entries, err := os.ReadDir(m.o.StateDir)
	if err != nil {
		return
	}
	for _, de := range entries {
		if !de.IsDir() {
			continue
		}
		if _, err := m.o.Sandboxes.Get(de.Name()); !errors.Is(err, store.ErrNotFound) {
			continue
		}
		klog.FromContext(ctx).Info("Stopping the monitor of a pod that no longer exists", "monitorDir", de.Name())
		if err := m.shutdownMonitor(ctx, de.Name()); err != nil {
			klog.FromContext(ctx).Error(err, "Stopping an orphaned monitor", "monitorDir", de.Name())
		}
	}
}

// reconnect dials the pod's monitor after a restart and returns its containers' states:
// nil when the monitor does not answer, and gone when nothing serves its socket any more
// (monitor.ErrGone; a monitor that is only slow to answer is not gone).
func (m *Manager) reconnect(ctx context.Context, podID, dir string) (_ map[string]monitor.ContainerState, gone bool) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := monitor.Dial(dctx, monitor.SocketPath(dir))
	if err != nil {
		klog.FromContext(ctx).Info("Monitor of pod is gone", "podSandboxID", podID, "err", err)
		return nil, errors.Is(err, monitor.ErrGone)
	}
	list, err := cl.List(dctx)
	if err != nil {
		_ = cl.Close()
		klog.FromContext(ctx).Info("Monitor of pod does not answer", "podSandboxID", podID, "err", err)
		// A monitor dying as it was dialled breaks the connection, and the client's
		// check then finds nothing serving the socket.
		return nil, errors.Is(err, monitor.ErrGone)
	}
	m.mu.Lock()
	m.pods[podID] = &pod{dir: dir, client: cl}
	m.mu.Unlock()
	out := make(map[string]monitor.ContainerState, len(list))
	for _, st := range list {
		out[st.ID] = st
	}
	return out, false
}

// reconcile sets a CREATED or RUNNING record from what the monitor (or, without one, the
// exit record on disk) says.
func (m *Manager) reconcile(ctx context.Context, e *entry, states map[string]monitor.ContainerState) {
	c := e.get()
	if st, ok := states[c.ID]; ok {
		switch st.Status {
		case monitor.StatusRunning:
			if c.State != StateRunning {
				c.State, c.Pid = StateRunning, st.Pid
				if c.StartedAt.IsZero() {
					c.StartedAt = time.Now()
				}
				_ = m.put(&c)
			}
			e.set(c)
			return
		case monitor.StatusCreated:
			e.set(c)
			return
		case monitor.StatusExited:
			if err := m.markExited(ctx, e, st.Exit); err != nil {
				klog.FromContext(ctx).Error(err, "Recording container exit", "containerID", c.ID)
			}
			return
		}
	}
	m.exitFromDisk(ctx, e)
}

// traversableDir creates the containers' root dir, or fixes the mode of one made by an
// older version, as 0711: the root of a pod with a user namespace is no one on the host and
// must pass through it to its rootfs (runtime.MountRootfsUserNS). Nobody may list it, and
// each container's own dir stays closed (0700, or 0710 to the pod's root group).
func traversableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create containers dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("make containers dir %s traversable: %w", dir, err)
	}
	return nil
}
