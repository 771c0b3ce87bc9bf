package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/monitor"
)

// pod is the daemon's handle on one pod's monitor.
type pod struct {
	mu     sync.Mutex // serialises launch and shutdown
	dir    string
	client *monitor.Client // nil until launched or reconnected
}

func (p *pod) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		_ = p.client.Close()
		p.client = nil
	}
}

func (m *Manager) podFor(podID string) *pod {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pods[podID]
	if !ok {
		p = &pod{dir: m.monitorDir(podID)}
		m.pods[podID] = p
	}
	return p
}

// monitorClient returns the client of the pod's monitor, launching it if StartPod did not
// (or it is gone).
func (m *Manager) monitorClient(ctx context.Context, podID string) (*monitor.Client, string, error) {
	p := m.podFor(podID)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client, p.dir, nil
	}
	sock := monitor.SocketPath(p.dir)
	// A monitor of a previous daemon run may still serve the pod. One that does not answer
	// in time is not replaced: a new monitor would take over its socket path, and the
	// containers of the old one would be lost to the daemon. Only a monitor that nothing
	// serves any more (monitor.ErrGone) is.
	if _, err := os.Stat(sock); err == nil {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cl, err := monitor.Dial(dctx, sock)
		cancel()
		if err == nil {
			p.client = cl
			return cl, p.dir, nil
		}
		if !errors.Is(err, monitor.ErrGone) {
			return nil, "", fmt.Errorf("monitor of pod %s does not answer: %w", podID, err)
		}
	}
	lo := monitor.LaunchOptions{
		Exe:   m.o.MonitorExe,
		Args:  m.o.MonitorArgs,
		PodID: podID,
		Dir:   p.dir,
	}
	if m.o.MonitorExe == "" {
		f, err := m.o.MonitorBinary.Get()
		if err != nil {
			return nil, "", fmt.Errorf("launch monitor of pod %s: %w", podID, err)
		}
		lo.ExeFile = f
	}
	if m.o.MonitorCgroup != "" {
		if _, err := m.o.Cgroups.Create(m.o.MonitorCgroup, nil); err != nil {
			return nil, "", fmt.Errorf("create monitor cgroup %s: %w", m.o.MonitorCgroup, err)
		}
		lo.Cgroup, lo.Cgroups = m.o.MonitorCgroup, m.o.Cgroups
	}
	if m.o.MonitorLogDir != "" {
		if err := os.MkdirAll(m.o.MonitorLogDir, 0o700); err != nil {
			return nil, "", fmt.Errorf("create monitor log dir: %w", err)
		}
		lo.LogFile = filepath.Join(m.o.MonitorLogDir, podID+".log")
	}
	pid, err := monitor.Launch(ctx, lo)
	if err != nil {
		return nil, "", fmt.Errorf("launch monitor of pod %s: %w", podID, err)
	}
	cl, err := monitor.Dial(ctx, sock)
	if err != nil {
		return nil, "", fmt.Errorf("connect to monitor of pod %s (pid %d): %w", podID, pid, err)
	}
	klog.FromContext(ctx).V(2).Info("Monitor started", "podSandboxID", podID, "pid", pid)
	p.client = cl
	return cl, p.dir, nil
}

// StartPod launches the pod's monitor ahead of its first container (the sandbox manager
// calls it while the pod's network is being set up). A pod whose monitor already serves is
// left as it is.
func (m *Manager) StartPod(ctx context.Context, podID string) error {
	_, _, err := m.monitorClient(ctx, podID)
	return err
}

// runningMonitor returns the client of the pod's monitor without launching one: the one
// in use, or a connection to the monitor that still serves the pod (one that did not
// answer when the daemon started, say). nil when nothing serves it any more; an error
// when it lives but does not answer.
func (m *Manager) runningMonitor(ctx context.Context, podID string) (*monitor.Client, error) {
	p := m.podFor(podID)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := monitor.Dial(dctx, monitor.SocketPath(p.dir))
	switch {
	case err == nil:
		p.client = cl
		return cl, nil
	case errors.Is(err, monitor.ErrGone):
		return nil, nil
	}
	return nil, fmt.Errorf("monitor of pod %s does not answer: %w", podID, err)
}

// existingClient returns the pod's monitor client without launching one (nil when none).
func (m *Manager) existingClient(podID string) *monitor.Client {
	p := m.knownPod(podID)
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client
}

// shutdownMonitor makes the pod's monitor exit (it kills what is left) and removes its
// directory. A monitor that is already gone is fine.
func (m *Manager) shutdownMonitor(ctx context.Context, podID string) error {
	// Cleanup runs to its end even when the RPC was cancelled (kubelet or crictl gave up):
	// with the caller's context the dial failed at once, the monitor was taken for gone and
	// its directory removed, and the monitor outlived its pod with nobody to stop it.
	ctx = context.WithoutCancel(ctx)
	p := m.podFor(podID)
	p.mu.Lock()
	defer p.mu.Unlock()
	cl := p.client
	if cl == nil {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := monitor.Dial(dctx, monitor.SocketPath(p.dir))
		cancel()
		if err == nil {
			cl = c
		}
	}
	if cl != nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := cl.Shutdown(sctx)
		cancel()
		_ = cl.Close()
		p.client = nil
		switch {
		case errors.Is(err, monitor.ErrGone):
			// Killed: it left its socket behind, and there is nothing to wait for.
			klog.FromContext(ctx).Info("Monitor of pod is gone", "podSandboxID", podID, "err", err)
		case err != nil && !errors.Is(err, monitor.ErrShuttingDown) && m.monitorAlive(p.dir):
			return fmt.Errorf("shut down monitor of pod %s: %w", podID, err)
		default:
			m.waitMonitorGone(ctx, p.dir)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("remove monitor dir of pod %s: %w", podID, err)
	}
	m.mu.Lock()
	delete(m.pods, podID)
	m.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Monitor stopped", "podSandboxID", podID)
	return nil
}

// monitorAlive reports whether something still answers on the monitor's socket.
func (m *Manager) monitorAlive(dir string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cl, err := monitor.Dial(ctx, monitor.SocketPath(dir))
	if err != nil {
		return false
	}
	_ = cl.Close()
	return true
}

// waitMonitorGone waits (bounded) until the monitor removed its socket on exit, so that
// a pod removal returns only once its monitor process is gone.
func (m *Manager) waitMonitorGone(ctx context.Context, dir string) {
	// A monitor removes its socket within a few milliseconds of the Shutdown answer: poll
	// finely (each poll is one stat) so that RemovePodSandbox does not wait a long tick.
	sock := monitor.SocketPath(dir)
	for i := 0; i < 1000; i++ {
		if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// watch follows a running container until it exits and records the exit, so that Status
// and List (which only read memory) see it. It uses a connection of its own: a client sends
// one request at a time, and a long wait must not hold up the pod's other requests.
func (m *Manager) watch(c Container) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx := klog.NewContext(m.ctx, klog.Background().WithValues("containerID", c.ID))
		m.watchLoop(ctx, c)
	}()
}

func (m *Manager) watchLoop(ctx context.Context, c Container) {
	logger := klog.FromContext(ctx)
	var cl *monitor.Client
	defer func() {
		if cl != nil {
			_ = cl.Close()
		}
	}()
	failures := 0
	for ctx.Err() == nil {
		e, err := m.lookup(c.ID)
		if err != nil || e.get().State == StateExited {
			return
		}
		if cl == nil {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			cl, err = monitor.Dial(dctx, monitor.SocketPath(c.MonitorDir))
			cancel()
		}
		var st monitor.ContainerState
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			st, err = cl.Wait(wctx, c.ID)
			cancel()
		}
		switch {
		case err == nil:
			if err := m.markExited(ctx, e, st.Exit); err != nil {
				logger.Error(err, "Recording container exit")
			}
			return
		case errors.Is(err, monitor.ErrTimeout) && ctx.Err() == nil:
			continue
		case errors.Is(err, monitor.ErrNotFound):
			m.monitorForgot(ctx, e)
			return
		case errors.Is(err, monitor.ErrGone):
			logger.Info("Monitor of container is gone", "err", err)
			// The client goes first: once the container shows EXITED, kubelet's next
			// CreateContainer must find none and launch a new monitor.
			m.dropIfGone(ctx, c.PodSandboxID)
			m.monitorGone(ctx, e)
			return
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		if cl != nil {
			_ = cl.Close()
			cl = nil
		}
		// A monitor that is gone says so (ErrGone, above). This one is alive but does not
		// answer (stopped, starved, its backlog full): its exit record, once there, is the
		// truth; until then the container is not reported exited, or kubelet would start
		// its next instance next to one that may still run.
		if rec, err := monitor.ReadExit(monitor.ContainerDir(c.MonitorDir, c.ID)); err == nil {
			if err := m.markExited(ctx, e, &rec); err != nil {
				logger.Error(err, "Recording container exit")
			}
			return
		}
		if failures == 5 || failures%100 == 0 {
			logger.Info("Monitor of container does not answer; still waiting for it", "failures", failures, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)):
		}
	}
}

func (m *Manager) exitFromDisk(ctx context.Context, e *entry) {
	m.exitFromDiskWhy(ctx, e, "")
}

// exitFromDiskWhy is exitFromDisk with the message reported when there is no exit record.
func (m *Manager) exitFromDiskWhy(ctx context.Context, e *entry, unknown string) {
	c := e.get()
	var recp *monitor.ExitRecord
	if rec, err := monitor.ReadExit(monitor.ContainerDir(c.MonitorDir, c.ID)); err == nil {
		recp = &rec
	}
	if err := m.markExitedWhy(ctx, e, recp, unknown); err != nil {
		klog.FromContext(ctx).Error(err, "Recording container exit", "containerID", c.ID)
	}
}

// monitorDiedMessage is the message of a container whose monitor died before it recorded
// the container's exit.
const monitorDiedMessage = "the pod's monitor died; the container's exit was not recorded"

// monitorGone settles container e once its pod's monitor is known to be gone (killed, or
// OOM-killed), as a restart of the daemon would find it (DESIGN.md section 7).
func (m *Manager) monitorGone(ctx context.Context, e *entry) {
	m.settleUnsupervised(ctx, e, monitorDiedMessage)
}

// monitorReplacedMessage is the message of a container that the pod's monitor does not know.
const monitorReplacedMessage = "the pod's monitor died (the one serving the pod now does not know the container); the container's exit was not recorded"

// monitorForgot settles container e, recorded CREATED or RUNNING, that the pod's monitor does
// not know. A monitor keeps every container it made until RemoveContainer, so this one is
// serving the pod in place of a monitor that died.
func (m *Manager) monitorForgot(ctx context.Context, e *entry) {
	m.settleUnsupervised(ctx, e, monitorReplacedMessage)
}

// settleUnsupervised settles a container that no monitor supervises any more: what is left
// of it is killed, and the exit is recorded from the exit record if the monitor wrote one,
// else as 255 "Unknown" with why as the message.
func (m *Manager) settleUnsupervised(ctx context.Context, e *entry, why string) {
	c := e.get()
	if c.State == StateExited {
		return
	}
	m.killLeftovers(ctx, c)
	m.exitFromDiskWhy(ctx, e, why)
}

// knownPod returns the pod's monitor state, nil when the manager has none.
func (m *Manager) knownPod(podID string) *pod {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pods[podID]
}

// dropIfGone drops the pod's client when nothing serves its monitor's socket any more: kubelet
// restarts an exited container with a CreateContainer that must not go through the client
// of a dead monitor. The pod's lock is held over the check, so no monitor is launched in
// between; a live monitor's client stays.
func (m *Manager) dropIfGone(ctx context.Context, podID string) {
	p := m.knownPod(podID)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := monitor.Dial(dctx, monitor.SocketPath(p.dir))
	if err == nil {
		_ = cl.Close()
		return
	}
	if errors.Is(err, monitor.ErrGone) {
		klog.FromContext(ctx).V(2).Info("Dropping the connection to a dead monitor", "podSandboxID", podID)
		_ = p.client.Close()
		p.client = nil
	}
}

// dropClient forgets cl, the pod's connection to a monitor found gone (see monitor.ErrGone),
// so that Stop and Remove no longer go through it. A later CreateContainer or StartPod finds
// no client and launches the pod a new monitor, as for a pod that has none. Only cl is
// dropped: a client made since then belongs to a newer monitor.
func (m *Manager) dropClient(ctx context.Context, podID string, cl *monitor.Client, cause error) {
	p := m.knownPod(podID)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cl == nil || p.client != cl {
		return
	}
	_ = cl.Close()
	p.client = nil
	klog.FromContext(ctx).Info("Monitor of pod is gone", "podSandboxID", podID, "err", cause)
}
