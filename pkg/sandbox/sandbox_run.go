package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/store"
	"k8s.io/klog/v2"
)

// Run creates a pod sandbox. On any error everything it did is undone, in reverse, with a
// context of its own (the caller's may be cancelled: that is often why Run failed), and the
// pod's name is released. The sandbox becomes visible to Get and List only once ready.
func (m *Manager) Run(ctx context.Context, c Config) (_ *Sandbox, retErr error) {
	if err := validate(&c); err != nil {
		return nil, err
	}
	podNet := c.NetworkMode == ModePod
	if podNet && m.o.CNI == nil {
		return nil, fmt.Errorf("pod network requested but no CNI network is configured: %w", store.ErrFailedPrecondition)
	}
	if podNet && m.o.CNI.Name() == "" {
		// Fail before creating anything: kubelet retries once the network is ready.
		_, reason := m.o.CNI.Status(ctx)
		return nil, fmt.Errorf("pod network not ready: %s: %w", reason, store.ErrFailedPrecondition)
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	logger := klog.FromContext(ctx).WithValues("podSandboxID", id, "pod", klog.KRef(c.Namespace, c.Name))
	ctx = klog.NewContext(ctx, logger)
	if err := m.reserve(&c, id); err != nil {
		return nil, err
	}

	stateDir, rootDir := m.dirs(id)
	r := &record{
		Sandbox: Sandbox{
			ID: id, Config: c, State: StateCreating, CreatedAt: time.Now(),
			ResolvConfPath: filepath.Join(rootDir, "resolv.conf"),
			HostsPath:      filepath.Join(rootDir, "hosts"),
			HostnamePath:   filepath.Join(rootDir, "hostname"),
		},
		StateDir: stateDir, RootDir: rootDir,
		// Set before ADD is attempted: a crash in the middle of ADD must still lead to DEL.
		NetworkAttached: podNet,
	}
	r.CgroupParent = c.CgroupParent
	if r.CgroupParent == "" {
		r.CgroupParent = filepath.Join(m.o.DefaultCgroupParent, id)
	}
	r.CgroupCreated = !m.o.Cgroups.Exists(r.CgroupParent)
	planPaths(r)
	r.Hostname, err = effectiveHostname(&c)
	if err != nil {
		m.release(&c, id)
		return nil, err
	}
	// The record exists before any side effect, so a crash at any later point is found and
	// cleaned up at start-up.
	if err := m.o.DB.Update(func(tx *store.Tx) error { return tx.Put(bucket, id, r) }); err != nil {
		m.release(&c, id)
		return nil, fmt.Errorf("persist sandbox %s: %w", id, err)
	}
	defer func() {
		if retErr == nil {
			return
		}
		m.undoRun(ctx, r)
	}()

	if err := m.setup(ctx, r); err != nil {
		return nil, err
	}
	// Ready in one transaction, then published: NRI-style hooks and List never see a
	// half-made sandbox.
	r.State = StateReady
	if err := m.put(r); err != nil {
		return nil, err
	}
	m.publishReady(r)
	logger.V(2).Info("Pod sandbox ready", "ips", r.IPs)
	return r.Sandbox.clone(), nil
}

// publishReady makes the ready sandbox visible and reports it created and started. Its op
// lock is taken before it is in the index, so a Stop that finds it reports after this.
func (m *Manager) publishReady(r *record) {
	e := &entry{rec: *r}
	e.op.Lock()
	defer e.op.Unlock()
	m.mu.Lock()
	m.byID[r.ID] = e
	m.mu.Unlock()
	m.emit(EventCreated, r)
	m.emit(EventStarted, r)
}

// undoRun reverts a failed Run. When the cleanup itself fails, the sandbox is kept as
// NOTREADY (and its name stays reserved) so kubelet's Remove can finish the job.
func (m *Manager) undoRun(ctx context.Context, r *record) {
	logger := klog.FromContext(ctx)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.CleanupTimeout)
	defer cancel()
	if h := m.o.Hooks.RemoveContainers; h != nil && m.o.Hooks.StartPod != nil {
		// What StartPod started (the monitor) goes first: it is the pod's, not the network's.
		if err := h(cctx, r.ID); err != nil {
			logger.Error(err, "Undoing failed sandbox creation: stopping the pod's processes")
		}
	}
	if err := m.teardown(cctx, r); err != nil {
		logger.Error(err, "Undoing failed sandbox creation; keeping it NOTREADY")
		r.State = StateNotReady
		if err := m.put(r); err != nil {
			logger.Error(err, "Persisting sandbox state")
		}
		m.mu.Lock()
		m.byID[r.ID] = &entry{rec: *r}
		m.mu.Unlock()
		return
	}
	if err := m.o.DB.Update(func(tx *store.Tx) error { return tx.Delete(bucket, r.ID) }); err != nil {
		logger.Error(err, "Deleting record of failed sandbox")
	}
	m.release(&r.Config, r.ID)
}

func effectiveHostname(c *Config) (string, error) {
	if c.NetworkMode == ModePod && c.Hostname != "" {
		return c.Hostname, nil
	}
	// Host network shares the node's UTS namespace; a pod UTS without a hostname keeps the
	// copy of the node's name that unshare made.
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read node hostname: %w", err)
	}
	return h, nil
}

// setup performs every side effect of Run, recording each in r as it goes.
func (m *Manager) setup(ctx context.Context, r *record) error {
	if err := os.MkdirAll(r.StateDir, 0o711); err != nil {
		return fmt.Errorf("create sandbox state dir: %w", err)
	}
	if err := os.MkdirAll(r.RootDir, 0o711); err != nil {
		return fmt.Errorf("create sandbox dir: %w", err)
	}
	// The pod cgroup and the resolver files do not depend on the namespaces: they are made
	// while the namespaces are pinned. Both are waited for before anything goes on.
	local := goErr(func() error { return m.setupCgroupAndFiles(r) })
	if err := errors.Join(m.pinNamespaces(r), <-local); err != nil {
		return err
	}
	// The plugins' exec is most of Run's time: the pod's monitor and its pod init, which
	// need the namespaces and the cgroup but not the network, start meanwhile. Every one
	// is waited for before Run goes on or undoes, so nothing is still starting behind it.
	podStarted := goErr(func() error {
		if h := m.o.Hooks.StartPod; h != nil {
			return h(ctx, r.ID)
		}
		return nil
	})
	// The init gets a copy of the sandbox taken now: it needs the namespace pins and the
	// cgroup, which exist, and nothing CNI fills in below.
	sb := r.Sandbox.clone()
	initStarted := goErr(func() error {
		if h := m.o.Hooks.StartPodInit; h != nil && sb.Config.PIDMode == ModePod {
			return h(ctx, sb)
		}
		return nil
	})
	var netErr error
	if r.NetworkAttached {
		res, err := m.o.CNI.Setup(ctx, m.cniPod(r))
		if err != nil {
			netErr = fmt.Errorf("set up pod network: %w", err)
		} else {
			r.Network, r.IPs = res.Network, res.IPs
		}
	}
	podErr, initErr := <-podStarted, <-initStarted
	if podErr != nil {
		podErr = fmt.Errorf("start pod processes: %w", podErr)
	}
	if initErr != nil {
		initErr = fmt.Errorf("start pod init: %w", initErr)
	}
	if err := errors.Join(netErr, podErr, initErr); err != nil {
		return err
	}
	hosts, err := hostsFile(r.Config.NetworkMode == ModeNode, r.Hostname, r.IPs, m.o.HostHosts)
	if err != nil {
		return err
	}
	return writePodFile(r, r.HostsPath, hosts)
}

// pinNamespaces creates and pins the pod's namespaces and mounts its /dev/shm.
func (m *Manager) pinNamespaces(r *record) error {
	c := &r.Config
	hostname := ""
	if c.NetworkMode == ModePod {
		hostname = c.Hostname
	}
	o := ns.PinOptions{Dir: filepath.Join(r.StateDir, "ns"), Kinds: podKinds(c), Hostname: hostname, Sysctls: c.Sysctls}
	if c.UserNS != nil {
		u, err := m.userOptions(c.UserNS)
		if err != nil {
			return err
		}
		o.User = u
	}
	if _, err := ns.Pin(o); err != nil {
		return fmt.Errorf("create pod namespaces: %w", err)
	}
	if r.ShmPath != "" {
		return mountShm(r.ShmPath, m.o.ShmSize)
	}
	return nil
}

// userOptions asks ns.Pin for the pod's user namespace, created by the holder binary.
func (m *Manager) userOptions(u *UserNamespace) (*ns.UserOptions, error) {
	o := &ns.UserOptions{UIDMappings: nsIDMaps(u.UIDMappings), GIDMappings: nsIDMaps(u.GIDMappings)}
	if m.o.UsernsHolder != nil {
		exe, err := m.o.UsernsHolder.Get()
		if err != nil {
			return nil, fmt.Errorf("user namespace holder binary: %w", err)
		}
		o.Holder = exe
	}
	return o, nil
}

// setupCgroupAndFiles creates the pod cgroup and writes resolv.conf and hostname.
func (m *Manager) setupCgroupAndFiles(r *record) error {
	c := &r.Config
	if _, err := m.o.Cgroups.Create(r.CgroupParent, c.Resources); err != nil {
		return fmt.Errorf("create pod cgroup: %w", err)
	}
	resolv, err := resolvConf(c.DNS, m.o.HostResolvConf)
	if err != nil {
		return err
	}
	if err := writePodFile(r, r.ResolvConfPath, resolv); err != nil {
		return err
	}
	return writePodFile(r, r.HostnamePath, []byte(r.Hostname+"\n"))
}

// goErr runs f on a goroutine; the channel yields its error.
func goErr(f func() error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return done
}

// planPaths fills in where the pins and /dev/shm will be, before the record is first
// written: teardown unpins and unmounts idempotently, so knowing a path too early is safe,
// knowing it too late (after a crash) would leak.
func planPaths(r *record) {
	for _, k := range podKinds(&r.Config) {
		p := filepath.Join(r.StateDir, "ns", string(k))
		switch k {
		case ns.Net:
			r.NetNSPath = p
		case ns.IPC:
			r.IPCNSPath = p
		case ns.UTS:
			r.UTSNSPath = p
		}
	}
	if r.Config.UserNS != nil {
		r.UsernsPath = filepath.Join(r.StateDir, "ns", string(ns.User))
	}
	if r.Config.IPCMode == ModePod {
		r.ShmPath = filepath.Join(r.StateDir, "shm")
	}
}

func (m *Manager) cniPod(r *record) cni.Pod {
	p := cni.Pod{
		ID: r.ID, Name: r.Config.Name, Namespace: r.Config.Namespace, UID: r.Config.UID,
		CgroupPath: r.CgroupParent, Annotations: r.Config.Annotations,
	}
	// A DEL after a reboot finds no namespace: plugins then release addresses and rules only.
	if r.NetNSPath != "" && ns.IsPinned(r.NetNSPath) {
		p.NetNS = r.NetNSPath
	}
	for _, pm := range r.Config.PortMappings {
		p.PortMappings = append(p.PortMappings, cni.PortMapping(pm))
	}
	if d := r.Config.DNS; d != nil {
		p.DNS = &cni.DNS{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	return p
}

// releaseNetwork runs CNI DEL while the record says the pod may be attached.
func (m *Manager) releaseNetwork(ctx context.Context, r *record) error {
	if !r.NetworkAttached {
		return nil
	}
	if m.o.CNI == nil {
		return fmt.Errorf("tear down pod network: no CNI network configured: %w", store.ErrFailedPrecondition)
	}
	if err := m.o.CNI.Teardown(ctx, m.cniPod(r)); err != nil {
		return fmt.Errorf("tear down pod network: %w", err)
	}
	r.NetworkAttached = false
	return nil
}

// releaseLocal undoes everything but the network and the record: /dev/shm, the namespace
// pins, the pod cgroup, the directories. Each step is idempotent; a failing step stops
// the directories from being removed (they may still hold a mount).
func (m *Manager) releaseLocal(r *record) error {
	// The pod cgroup is removed while the pins are unmounted, and the two directories
	// together: the steps are independent and mostly wait in the kernel, and
	// RemovePodSandbox would otherwise wait for their sum.
	var (
		wg    sync.WaitGroup
		cgErr error
	)
	if r.CgroupCreated && !m.cgroupShared(r) {
		wg.Go(func() { cgErr = m.o.Cgroups.Remove(r.CgroupParent) })
	}
	var errs []error
	if err := unmountShm(r.ShmPath); err != nil {
		errs = append(errs, err)
	}
	for _, p := range r.pinPaths() {
		if p == "" {
			continue
		}
		if err := ns.Unpin(p); err != nil {
			errs = append(errs, err)
		}
	}
	wg.Wait()
	if cgErr != nil {
		errs = append(errs, cgErr)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	dirs := []string{r.StateDir, r.RootDir}
	errs = make([]error, len(dirs))
	for i, d := range dirs {
		wg.Go(func() {
			if err := os.RemoveAll(d); err != nil {
				errs[i] = fmt.Errorf("remove sandbox dir: %w", err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cgroupShared reports whether another sandbox uses the same cgroup (kubelet reuses a pod's
// cgroup for the next attempt of its sandbox).
func (m *Manager) cgroupShared(r *record) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for id, e := range m.byID {
		if id != r.ID && e.get().CgroupParent == r.CgroupParent {
			return true
		}
	}
	return false
}

// teardown undoes a whole sandbox except its record: network first (plugins need the
// namespace), then the local state.
func (m *Manager) teardown(ctx context.Context, r *record) error {
	// The pod init goes first: it lives in the namespaces and the cgroup released below.
	if err := m.stopPodInit(ctx, r); err != nil {
		return err
	}
	if err := m.releaseNetwork(ctx, r); err != nil {
		return err
	}
	return m.releaseLocal(r)
}
