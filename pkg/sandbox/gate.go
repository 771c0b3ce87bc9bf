package sandbox

import (
	"fmt"
	"sync"

	"github.com/cri-mini/cri-mini/pkg/store"
)

// Hold returns the sandbox if it is READY and keeps Stop and Remove of it waiting until
// release is called. A container create holds its sandbox from the check to the moment the
// container is published, so a concurrent Stop or Remove either runs before (and the create
// is refused) or after (and stops or removes the new container): never a container left in
// a removed pod. release must be called exactly once; holds do not exclude each other.
func (m *Manager) Hold(idOrPrefix string) (_ *Sandbox, release func(), _ error) {
	e, err := m.resolve(idOrPrefix)
	if err != nil {
		return nil, nil, err
	}
	e.gate.RLock()
	r := e.get()
	// Remove deletes the entry while holding the gate: an entry no longer indexed is gone.
	if _, err := m.resolve(r.ID); err != nil {
		e.gate.RUnlock()
		return nil, nil, err
	}
	if r.State != StateReady {
		e.gate.RUnlock()
		return nil, nil, fmt.Errorf("pod sandbox %s is %s, not ready: %w", r.ID, r.State, store.ErrFailedPrecondition)
	}
	return r.Sandbox.clone(), sync.OnceFunc(e.gate.RUnlock), nil
}
