package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/cri-mini/cri-mini/pkg/store"
	"k8s.io/klog/v2"
)

// Stop stops the sandbox's containers, tears its network down and unmounts its /dev/shm;
// the sandbox is NOTREADY afterwards, even when a step fails, and a later Stop or Remove
// retries what is left. Stopping a stopped sandbox is a no-op. A missing sandbox returns an
// error wrapping store.ErrNotFound (the CRI layer answers OK for it).
func (m *Manager) Stop(ctx context.Context, idOrPrefix string) error {
	e, err := m.resolve(idOrPrefix)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	e.gate.Lock()
	defer e.gate.Unlock()
	return m.stopLocked(ctx, e)
}

func (m *Manager) stopLocked(ctx context.Context, e *entry) error {
	r := e.get()
	logger := klog.FromContext(ctx).WithValues("podSandboxID", r.ID, "pod", klog.KRef(r.Config.Namespace, r.Config.Name))
	ctx = klog.NewContext(ctx, logger)
	// NOTREADY first: a pod being stopped is not ready even when a later step fails, and
	// kubelet must not keep seeing READY while it retries.
	if r.State != StateNotReady {
		if err := m.update(e, func(r *record) { r.State = StateNotReady }); err != nil {
			return err
		}
		nr := e.get()
		m.emit(EventStopped, &nr)
	}
	if h := m.o.Hooks.StopContainers; h != nil {
		if err := h(ctx, r.ID); err != nil {
			return fmt.Errorf("stop containers of sandbox %s: %w", r.ID, err)
		}
	}
	// The pod init and /dev/shm are the pod's, not the network's: they go while the
	// plugins run DEL, which is most of Stop's time. A failure of either side leaves the
	// other done; Stop reports both and a retry redoes what is left.
	local := goErr(func() error { return errors.Join(m.stopPodInit(ctx, &r), unmountShm(r.ShmPath)) })
	var errs []error
	if r.NetworkAttached {
		nr := e.get()
		if err := m.releaseNetwork(ctx, &nr); err != nil {
			errs = append(errs, err)
		} else if err := m.update(e, func(r *record) { r.NetworkAttached = false }); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, <-local)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", r.ID, err)
	}
	logger.V(2).Info("Pod sandbox stopped")
	return nil
}

// Remove removes the sandbox: its containers (through the hook), then Stop if needed, the
// namespace pins, the pod cgroup it created, its directories, its record and its name.
// On failure the sandbox stays (NOTREADY) for a later Remove. A missing sandbox returns an
// error wrapping store.ErrNotFound (the CRI layer answers OK for it).
func (m *Manager) Remove(ctx context.Context, idOrPrefix string) error {
	e, err := m.resolve(idOrPrefix)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	e.gate.Lock()
	defer e.gate.Unlock()
	r := e.get()
	if _, err := m.resolve(r.ID); err != nil {
		return nil // removed by a concurrent Remove while we waited for the lock
	}
	logger := klog.FromContext(ctx).WithValues("podSandboxID", r.ID, "pod", klog.KRef(r.Config.Namespace, r.Config.Name))
	ctx = klog.NewContext(ctx, logger)
	if h := m.o.Hooks.RemoveContainers; h != nil {
		if err := h(ctx, r.ID); err != nil {
			return fmt.Errorf("remove containers of sandbox %s: %w", r.ID, err)
		}
	}
	if err := m.stopLocked(ctx, e); err != nil {
		return err
	}
	r = e.get()
	if err := m.releaseLocal(&r); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", r.ID, err)
	}
	if err := m.o.DB.Update(func(tx *store.Tx) error { return tx.Delete(bucket, r.ID) }); err != nil {
		return fmt.Errorf("delete sandbox record %s: %w", r.ID, err)
	}
	m.mu.Lock()
	delete(m.byID, r.ID)
	if m.names[nameKey(&r.Config)] == r.ID {
		delete(m.names, nameKey(&r.Config))
	}
	m.mu.Unlock()
	m.emit(EventDeleted, &r)
	logger.V(2).Info("Pod sandbox removed")
	return nil
}

// UpdateResources applies pod-level resources to the pod cgroup and records them.
func (m *Manager) UpdateResources(ctx context.Context, idOrPrefix string, res *Resources) error {
	if err := res.Validate(); err != nil {
		return fmt.Errorf("resources: %v: %w", err, store.ErrInvalidArgument)
	}
	e, err := m.resolve(idOrPrefix)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	r := e.get()
	if r.State != StateReady {
		return fmt.Errorf("sandbox %s is %s: %w", r.ID, r.State, store.ErrFailedPrecondition)
	}
	if err := m.o.Cgroups.Update(r.CgroupParent, res); err != nil {
		return fmt.Errorf("update resources of sandbox %s: %w", r.ID, err)
	}
	cp := *res
	if err := m.update(e, func(r *record) { r.Config.Resources = &cp }); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Pod sandbox resources updated", "podSandboxID", r.ID)
	return nil
}

// stopPodInit stops the shared-PID init of a pod that has one (Hooks.StopPodInit).
func (m *Manager) stopPodInit(ctx context.Context, r *record) error {
	if h := m.o.Hooks.StopPodInit; h != nil && r.Config.PIDMode == ModePod {
		if err := h(ctx, r.ID); err != nil {
			return fmt.Errorf("stop pod init of sandbox %s: %w", r.ID, err)
		}
	}
	return nil
}
