package container

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// killWait bounds the wait for a container to die after SIGKILL; the kernel tears a PID
// namespace down quickly unless a process is stuck in uninterruptible sleep.
const killWait = 30 * time.Second

// Start lets a CREATED container run its command.
func (m *Manager) Start(ctx context.Context, idOrPrefix string) error {
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.get()
	if c.State != StateCreated {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, c.State, store.ErrFailedPrecondition)
	}
	// The pod's monitor holds the created process. Without a client it was found dead (a
	// CREATED container's pod always has one otherwise): a new monitor would not know the
	// container, so it is settled instead.
	cl := m.existingClient(c.PodSandboxID)
	if cl == nil {
		m.monitorGone(ctx, e)
		return fmt.Errorf("start container %s: the pod's monitor died: %w", c.ID, store.ErrFailedPrecondition)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	// Once asked, the monitor starts the container whether the caller still waits or not:
	// the request and the record of its outcome run to their end when the caller gives up
	// (kubelet or crictl cancelling on a timeout). Cut short, they left a running container
	// recorded CREATED and unwatched, and kubelet started another instance next to it.
	ctx = context.WithoutCancel(ctx)
	sctx, cancel := context.WithTimeout(ctx, monitor.DefaultTimeout)
	defer cancel()
	st, err := cl.Start(sctx, c.ID)
	if errors.Is(err, monitor.ErrGone) {
		m.dropClient(ctx, c.PodSandboxID, cl, err)
		m.monitorGone(ctx, e)
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	if errors.Is(err, monitor.ErrNotFound) {
		// The monitor serving the pod is not the one that created the container: that one
		// died, and a create launched this one since.
		m.monitorForgot(ctx, e)
		return fmt.Errorf("start container %s: the pod's monitor died: %w", c.ID, store.ErrFailedPrecondition)
	}
	if err != nil {
		// A command that cannot run (missing binary) leaves an exited container, as the
		// CRI expects: its init exits at once, and the monitor's record says how.
		if st, werr := m.waitExit(ctx, c, 2*time.Second); werr == nil {
			if merr := m.markExited(ctx, e, st.Exit); merr != nil {
				klog.FromContext(ctx).Error(merr, "Recording container exit", "containerID", c.ID)
			}
		}
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	c.State, c.Pid, c.StartedAt = StateRunning, st.Pid, time.Now()
	if err := m.put(&c); err != nil {
		return err
	}
	m.commit(e, c, EventStarted)
	if st.Status == monitor.StatusExited {
		if err := m.markExited(ctx, e, st.Exit); err != nil {
			return err
		}
	} else {
		m.watch(c)
	}
	klog.FromContext(ctx).V(2).Info("Container started", "containerID", c.ID, "pid", st.Pid)
	return nil
}

// Stop sends the image's stop signal, then SIGKILL after timeout, and returns when the
// container's process is gone. Stopping an exited or unknown container succeeds (the CRI
// layer maps the NotFound error to OK).
func (m *Manager) Stop(ctx context.Context, idOrPrefix string, timeout time.Duration) error {
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	return m.stopLocked(ctx, e, timeout)
}

func (m *Manager) stopLocked(ctx context.Context, e *entry, timeout time.Duration) error {
	c := e.get()
	if c.State == StateExited {
		return nil
	}
	logger := klog.FromContext(ctx)
	cl, err := m.runningMonitor(ctx, c.PodSandboxID)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", c.ID, err)
	}
	if cl == nil {
		// No monitor (it died): what is left of the container is killed, and the exit
		// record (if any) tells how it ended.
		m.monitorGone(ctx, e)
		return nil
	}
	// A monitor that died meanwhile cannot stop the container: what is left of it is
	// killed through its cgroup instead, and Stop succeeds (it is idempotent).
	gone := func(err error) bool {
		if !errors.Is(err, monitor.ErrGone) {
			return false
		}
		m.dropClient(ctx, c.PodSandboxID, cl, err)
		m.monitorGone(ctx, e)
		return true
	}
	sig := syscall.Signal(c.StopSignal)
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if c.State == StateCreated || timeout <= 0 {
		sig = syscall.SIGKILL
	}
	caughtBefore, _ := signalCaught(c.Pid, sig)
	if _, err := cl.Signal(ctx, c.ID, sig); err != nil {
		if errors.Is(err, monitor.ErrNotFound) {
			m.monitorForgot(ctx, e)
			return nil
		}
		if gone(err) {
			return nil
		}
		return fmt.Errorf("stop container %s: signal %v: %w", c.ID, sig, err)
	}
	logger.V(2).Info("Stopping container", "containerID", c.ID, "signal", sig.String(), "timeout", timeout)
	if sig != syscall.SIGKILL {
		endWatch := resendWhenCaught(ctx, cl, c, sig, caughtBefore)
		st, err := m.waitExit(ctx, c, timeout)
		endWatch()
		if err == nil {
			return m.markExited(ctx, e, st.Exit)
		}
		if gone(err) {
			return nil
		}
		if !errors.Is(err, monitor.ErrTimeout) {
			return fmt.Errorf("stop container %s: %w", c.ID, err)
		}
		if _, err := cl.Signal(ctx, c.ID, syscall.SIGKILL); err != nil && !errors.Is(err, monitor.ErrNotFound) {
			if gone(err) {
				return nil
			}
			return fmt.Errorf("stop container %s: SIGKILL: %w", c.ID, err)
		}
	}
	st, err := m.waitExit(ctx, c, killWait)
	if gone(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop container %s: wait after SIGKILL: %w", c.ID, err)
	}
	return m.markExited(ctx, e, st.Exit)
}

// waitExit waits on a connection of its own (a client sends one request at a time).
func (m *Manager) waitExit(ctx context.Context, c Container, d time.Duration) (monitor.ContainerState, error) {
	cl, err := monitor.Dial(ctx, monitor.SocketPath(c.MonitorDir))
	if err != nil {
		return monitor.ContainerState{}, fmt.Errorf("connect to monitor: %w", err)
	}
	defer cl.Close()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	st, err := cl.Wait(wctx, c.ID)
	if err == nil && st.Status != monitor.StatusExited {
		return st, fmt.Errorf("container %s still %s: %w", c.ID, st.Status, monitor.ErrTimeout)
	}
	return st, err
}

// Remove stops the container if needed and removes its process from the monitor, its
// rootfs, cgroup, record and name. Removing an unknown container returns an error wrapping
// store.ErrNotFound (the CRI layer answers OK for it).
func (m *Manager) Remove(ctx context.Context, idOrPrefix string) error {
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.get()
	if err := m.stopLocked(ctx, e, 0); err != nil {
		return err
	}
	if err := m.monitorRemove(ctx, &c); err != nil {
		return err
	}
	if err := m.releaseResources(&c); err != nil {
		return err
	}
	if err := m.deleteRecord(c.ID); err != nil {
		return err
	}
	m.forget(e, &c)
	m.forgetStats(&c)
	klog.FromContext(ctx).V(2).Info("Container removed", "containerID", c.ID)
	return nil
}

// forget drops the removed container from the index and reports it deleted, after any
// event of the container still being reported (see commit).
func (m *Manager) forget(e *entry, c *Container) {
	e.ev.Lock()
	defer e.ev.Unlock()
	m.mu.Lock()
	delete(m.byID, c.ID)
	if key := nameKey(c.PodSandboxID, c.Config.Name, c.Config.Attempt); m.names[key] == c.ID {
		delete(m.names, key)
	}
	m.mu.Unlock()
	m.emit(EventDeleted, e.get())
}

// StopPod stops every container of the pod right away (the sandbox manager's
// StopContainers hook; kubelet stops containers with their grace period before it stops
// the pod).
//
// The containers are stopped concurrently: each stop waits for its process to be gone,
// and the pod's Stop (then its network teardown) should take one such wait, not the sum.
func (m *Manager) StopPod(ctx context.Context, podID string) error {
	ids := m.containersOf(podID)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Stop(ctx, id, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RemovePod removes every container of the pod and shuts its monitor down (the sandbox
// manager's RemoveContainers hook).
func (m *Manager) RemovePod(ctx context.Context, podID string) error {
	var errs []error
	for _, id := range m.containersOf(podID) {
		if err := m.Remove(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.stats.forget(podStatsKey(podID))
	return m.shutdownMonitor(ctx, podID)
}

// ReopenLog makes the monitor open the container's log file anew (kubelet renamed the old
// one to rotate it). Only a running container has a log being written.
func (m *Manager) ReopenLog(ctx context.Context, idOrPrefix string) error {
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	c := e.get()
	if c.State != StateRunning {
		return fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, store.ErrFailedPrecondition)
	}
	cl := m.existingClient(c.PodSandboxID)
	if cl == nil {
		return fmt.Errorf("container %s: its pod's monitor is not connected: %w", c.ID, store.ErrFailedPrecondition)
	}
	if err := cl.ReopenLog(ctx, c.ID); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", c.ID, err)
	}
	return nil
}
