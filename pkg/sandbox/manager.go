package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/store"
	"k8s.io/klog/v2"
)

const bucket = "sandboxes"

// Hooks connect the sandbox lifecycle to the container side. Every hook may be nil and must
// be idempotent: Stop and Remove are retried after a failure.
type Hooks struct {
	// StopContainers stops every container of the sandbox (Stop, and Remove of a sandbox
	// that was not stopped).
	StopContainers func(ctx context.Context, sandboxID string) error
	// RemoveContainers force-removes every container of the sandbox (Remove).
	RemoveContainers func(ctx context.Context, sandboxID string) error
	// StartPodInit starts the pod's shared-PID init (`cri-mini pause`) when the pod asks for
	// one PID namespace (PIDMode == ModePod). Run calls it once namespaces and cgroup are
	// up, concurrently with the CNI ADD (the init needs no network); an error fails Run and
	// undoes everything. Without it such pods get no init and the container side decides
	// how to share the PID namespace.
	StartPodInit func(ctx context.Context, sb *Sandbox) error
	// StopPodInit stops that init (Stop, after the containers, concurrently with the CNI
	// DEL).
	StopPodInit func(ctx context.Context, sandboxID string) error
	// StartPod starts what the pod's containers will need (the pod's monitor), so that the
	// first CreateContainer does not pay for it. Run calls it concurrently with the CNI ADD,
	// after the namespaces and cgroup exist; an error fails Run, whose undo then calls
	// RemoveContainers (which must also stop what StartPod started).
	StartPod func(ctx context.Context, sandboxID string) error
}

// Options configure a Manager.
type Options struct {
	StateDir string    // volatile (tmpfs) dir: namespace pins, /dev/shm mounts
	RootDir  string    // persistent dir: hosts, resolv.conf, hostname files
	DB       *store.DB // metadata; records go to the "sandboxes" bucket
	// CNI is the pod network; nil allows host-network pods only.
	CNI *cni.Network
	// Cgroups manages the pod cgroups; nil means cgroups.New().
	Cgroups *cgroups.Manager
	// DefaultCgroupParent holds the cgroup of pods that give no cgroup parent; each such
	// pod gets <DefaultCgroupParent>/<id>. Default "/cri-mini".
	DefaultCgroupParent string
	ShmSize             int64  // bytes of each pod's /dev/shm; default 64 MiB
	HostResolvConf      string // copied for pods without a DNS config; default /etc/resolv.conf
	HostHosts           string // copied for host-network pods; default /etc/hosts
	// CleanupTimeout bounds each undo step run after a failure; default 1 minute.
	CleanupTimeout time.Duration
	Hooks          Hooks
	// UsernsHolder is the binary (with the ns.HoldCommand subcommand) run for a moment to
	// create a pod's user namespace; nil runs this process's own binary. The caller owns it.
	UsernsHolder *runtime.SealedBinary
	// Events, when set, is told of every lifecycle change once it is recorded. It is
	// called synchronously by the goroutine that made the change, without the manager's
	// index or record locks, and must not block: a slow consumer would hold up Run, Stop
	// and Remove.
	Events func(Event)
}

// Manager owns every pod sandbox of the node. It is safe for concurrent use.
type Manager struct {
	o Options

	mu    sync.RWMutex
	byID  map[string]*entry
	names map[string]string // nameKey → sandbox ID, including sandboxes being created
}

type entry struct {
	op sync.Mutex // serialises Stop/Remove/UpdateResources of this sandbox
	// gate is held shared by container creates in the sandbox (Hold) and exclusively by
	// Stop and Remove, so no container can be created in a sandbox being stopped.
	gate sync.RWMutex
	mu   sync.RWMutex // guards rec for readers
	// rec is replaced, never mutated in place, so a reader's copy stays consistent.
	rec record
}

func (e *entry) get() record {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.rec
}

// NewManager loads the sandbox records, cleans up sandboxes whose creation was interrupted,
// marks sandboxes whose namespace pins are gone (a reboot) NOTREADY, and garbage-collects
// CNI attachments of sandboxes that no longer exist.
func NewManager(ctx context.Context, o Options) (*Manager, error) {
	if o.StateDir == "" || o.RootDir == "" || o.DB == nil {
		return nil, fmt.Errorf("sandbox manager: state dir, root dir and database are required")
	}
	if o.Cgroups == nil {
		o.Cgroups = cgroups.New()
	}
	if o.DefaultCgroupParent == "" {
		o.DefaultCgroupParent = "/cri-mini"
	}
	if o.ShmSize == 0 {
		o.ShmSize = 64 << 20
	}
	if o.HostResolvConf == "" {
		o.HostResolvConf = "/etc/resolv.conf"
	}
	if o.HostHosts == "" {
		o.HostHosts = "/etc/hosts"
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = time.Minute
	}
	m := &Manager{o: o, byID: map[string]*entry{}, names: map[string]string{}}
	if err := m.recover(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) recover(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	var recs map[string]*record
	err := m.o.DB.View(func(tx *store.Tx) (err error) {
		// A corrupt record is left in the database for inspection.
		recs, err = store.LoadAll(tx, bucket,
			func(id string, r *record) bool { return r.ID == id },
			func(id string, err error) { logger.Error(err, "Skipping corrupt sandbox record", "podSandboxID", id) })
		return err
	})
	if err != nil {
		return err
	}
	for _, rp := range recs {
		r := *rp
		switch {
		case r.State == StateCreating:
			logger.Info("Cleaning up sandbox whose creation was interrupted", "podSandboxID", r.ID)
			// Bounded: one hung plugin must not keep the daemon from ever serving.
			tctx, cancel := context.WithTimeout(ctx, m.o.CleanupTimeout)
			err := m.teardown(tctx, &r)
			cancel()
			if err != nil {
				logger.Error(err, "Cleaning up interrupted sandbox; keeping it NOTREADY for Remove", "podSandboxID", r.ID)
				r.State = StateNotReady
				if err := m.put(&r); err != nil {
					logger.Error(err, "Persisting sandbox state", "podSandboxID", r.ID)
				}
				break
			}
			if err := m.o.DB.Update(func(tx *store.Tx) error { return tx.Delete(bucket, r.ID) }); err != nil {
				logger.Error(err, "Deleting sandbox record", "podSandboxID", r.ID)
			}
			continue
		case r.State == StateReady && !pinsAlive(&r):
			logger.Info("Sandbox namespaces are gone (reboot?), marking it NOTREADY", "podSandboxID", r.ID)
			r.State = StateNotReady
			if err := m.put(&r); err != nil {
				logger.Error(err, "Persisting sandbox state", "podSandboxID", r.ID)
			}
		}
		m.byID[r.ID] = &entry{rec: r}
		m.names[nameKey(&r.Config)] = r.ID
	}
	if m.o.CNI != nil {
		var valid []string
		for id, e := range m.byID {
			if e.rec.NetworkAttached {
				valid = append(valid, id)
			}
		}
		gctx, cancel := context.WithTimeout(ctx, m.o.CleanupTimeout)
		defer cancel()
		if err := m.o.CNI.GC(gctx, valid); err != nil {
			logger.Error(err, "CNI garbage collection")
		}
	}
	return nil
}

func pinsAlive(r *record) bool {
	for _, p := range r.pinPaths() {
		if p != "" && !ns.IsPinned(p) {
			return false
		}
	}
	return r.ShmPath == "" || isMountPoint(r.ShmPath)
}

func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate sandbox ID: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (m *Manager) put(r *record) error {
	if err := m.o.DB.Update(func(tx *store.Tx) error { return tx.Put(bucket, r.ID, r) }); err != nil {
		return fmt.Errorf("persist sandbox %s: %w", r.ID, err)
	}
	return nil
}

// update persists a changed copy of e's record and then publishes it to readers.
func (m *Manager) update(e *entry, change func(r *record)) error {
	r := e.get()
	change(&r)
	if err := m.put(&r); err != nil {
		return err
	}
	e.mu.Lock()
	e.rec = r
	e.mu.Unlock()
	return nil
}

func (m *Manager) reserve(c *Config, id string) error {
	key := nameKey(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	if other, ok := m.names[key]; ok {
		return fmt.Errorf("pod sandbox name %s/%s (uid %s, attempt %d) is reserved for %s: %w",
			c.Namespace, c.Name, c.UID, c.Attempt, other, store.ErrAlreadyExists)
	}
	m.names[key] = id
	return nil
}

func (m *Manager) release(c *Config, id string) {
	key := nameKey(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.names[key] == id {
		delete(m.names, key)
	}
}

// resolve finds a sandbox by full ID or unique ID prefix.
func (m *Manager) resolve(idOrPrefix string) (*entry, error) {
	if idOrPrefix == "" {
		return nil, fmt.Errorf("pod sandbox ID: empty: %w", store.ErrInvalidArgument)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if e, ok := m.byID[idOrPrefix]; ok {
		return e, nil
	}
	var found *entry
	var n int
	for id, e := range m.byID {
		if strings.HasPrefix(id, idOrPrefix) {
			found = e
			n++
		}
	}
	switch n {
	case 0:
		return nil, fmt.Errorf("pod sandbox %s: %w", idOrPrefix, store.ErrNotFound)
	case 1:
		return found, nil
	}
	return nil, fmt.Errorf("pod sandbox ID prefix %s matches %d sandboxes: %w", idOrPrefix, n, store.ErrInvalidArgument)
}

// Get returns a copy of the sandbox with the given ID or unique ID prefix, from memory.
func (m *Manager) Get(idOrPrefix string) (*Sandbox, error) {
	e, err := m.resolve(idOrPrefix)
	if err != nil {
		return nil, err
	}
	r := e.get()
	return r.Sandbox.clone(), nil
}

// List returns copies of all sandboxes, oldest first, from memory.
func (m *Manager) List() []*Sandbox {
	m.mu.RLock()
	entries := make([]*entry, 0, len(m.byID))
	for _, e := range m.byID {
		entries = append(entries, e)
	}
	m.mu.RUnlock()
	out := make([]*Sandbox, 0, len(entries))
	for _, e := range entries {
		r := e.get()
		out = append(out, r.Sandbox.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (m *Manager) dirs(id string) (state, root string) {
	return filepath.Join(m.o.StateDir, "sandboxes", id), filepath.Join(m.o.RootDir, "sandboxes", id)
}
