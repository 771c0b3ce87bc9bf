package sandbox

// EventType is a lifecycle change of a pod sandbox.
type EventType int

// The lifecycle changes a sandbox goes through, each reported once.
const (
	// EventCreated and EventStarted are reported together, when the sandbox becomes READY:
	// it is created and started in one step, and the CRI's consumers expect both.
	EventCreated EventType = iota + 1
	EventStarted
	// EventStopped: the sandbox went NOTREADY (Stop, or Remove of a ready sandbox).
	EventStopped
	// EventDeleted: the sandbox is removed.
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
	// Sandbox is a copy of the sandbox as the change left it; for EventDeleted it is the
	// last state the sandbox had, which Get no longer returns.
	Sandbox *Sandbox
}

// emit passes the change to Options.Events. Callers hold the sandbox's op lock (or own a
// sandbox not yet published), so one sandbox's events keep their order, and none of the
// locks Get and List take: the hook may read the manager.
func (m *Manager) emit(t EventType, r *record) {
	if m.o.Events != nil {
		m.o.Events(Event{Type: t, Sandbox: r.Sandbox.clone()})
	}
}
