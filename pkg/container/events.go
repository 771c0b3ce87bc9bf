package container

// EventType is a lifecycle change of a container.
type EventType int

// The lifecycle changes a container goes through, each reported once.
const (
	// EventCreated: the container is CREATED (its process waits in the monitor).
	EventCreated EventType = iota + 1
	// EventStarted: the container is RUNNING.
	EventStarted
	// EventStopped: the container is EXITED, whether stopped or ended on its own.
	EventStopped
	// EventDeleted: the container is removed.
	EventDeleted
)

func (t EventType) String() string {
	switch t {
	case EventCreated:
		return "created"
	case EventStarted:
		return "started"
	case EventStopped:
		return "stopped"
	case EventDeleted:
		return "deleted"
	}
	return "unknown"
}

// Event reports a lifecycle change after it was recorded (in the store and in memory).
type Event struct {
	Type EventType
	// Container is the record as the change left it.
	Container Container
}

// emit passes ev to Options.Events. Callers hold the container's event lock (entry.ev), so
// the events of one container reach the hook in the order of its changes, and none of the
// locks Get and List take: the hook may read the manager.
func (m *Manager) emit(t EventType, c Container) {
	if m.o.Events != nil {
		m.o.Events(Event{Type: t, Container: c})
	}
}

// commit publishes c as e's record and reports the change. The event lock is held over
// both, so an operation that sees the new record (and then makes a change of its own)
// reports its change after this one: a STOPPED from the watcher is never overtaken by the
// DELETED of a Remove that saw the container EXITED.
func (m *Manager) commit(e *entry, c Container, t EventType) {
	e.ev.Lock()
	defer e.ev.Unlock()
	e.set(c)
	m.emit(t, c)
}
