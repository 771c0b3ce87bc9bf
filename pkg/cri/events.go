package cri

import (
	"sync"
	"sync/atomic"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// DefaultEventBuffer is how many events a GetContainerEvents subscriber may fall behind by
// before it is ended, as many as containerd queues.
const DefaultEventBuffer = 1000

// Events turns the domain managers' lifecycle events into ContainerEventResponses and fans
// them out to the GetContainerEvents subscribers. It is built before the managers (their
// Options take its Container and Sandbox methods) and bound to the server by NewServer,
// which it reads the statuses from.
type Events struct {
	buffer int
	server atomic.Pointer[Server]

	mu   sync.Mutex
	subs map[*subscription]struct{}
}

// subscription is one subscriber's queue. A publisher never waits on it: when the queue is
// full the subscriber is dropped and lagged is closed.
type subscription struct {
	events chan *runtimeapi.ContainerEventResponse
	lagged chan struct{}
}

// NewEvents returns a fan-out whose subscribers may each fall behind by buffer events
// (DefaultEventBuffer when buffer <= 0).
func NewEvents(buffer int) *Events {
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	return &Events{buffer: buffer, subs: map[*subscription]struct{}{}}
}

func (ev *Events) bind(s *Server) { ev.server.Store(s) }

// Container is the container manager's Events hook.
func (ev *Events) Container(e container.Event) {
	s := ev.server.Load()
	if s == nil || !ev.subscribed() {
		return
	}
	ev.publish(s.containerEvent(e))
}

// Sandbox is the sandbox manager's Events hook.
func (ev *Events) Sandbox(e sandbox.Event) {
	s := ev.server.Load()
	if s == nil || !ev.subscribed() {
		return
	}
	ev.publish(s.sandboxEvent(e))
}

// subscribe registers a subscriber; cancel unregisters it (idempotent).
func (ev *Events) subscribe() (sub *subscription, cancel func()) {
	sub = &subscription{
		events: make(chan *runtimeapi.ContainerEventResponse, ev.buffer),
		lagged: make(chan struct{}),
	}
	ev.mu.Lock()
	ev.subs[sub] = struct{}{}
	ev.mu.Unlock()
	return sub, func() {
		ev.mu.Lock()
		delete(ev.subs, sub)
		ev.mu.Unlock()
	}
}

func (ev *Events) subscribed() bool {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.subs) > 0
}

// publish queues resp for every subscriber. It holds the lock over the whole fan-out, so
// all subscribers see the events in one order, and never blocks: a subscriber whose queue
// is full has missed an event and is ended, rather than holding up the runtime operation
// that published.
func (ev *Events) publish(resp *runtimeapi.ContainerEventResponse) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for sub := range ev.subs {
		select {
		case sub.events <- resp:
		default:
			delete(ev.subs, sub)
			close(sub.lagged)
		}
	}
}

var containerEventTypes = map[container.EventType]runtimeapi.ContainerEventType{
	container.EventCreated: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	container.EventStarted: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	container.EventStopped: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	container.EventDeleted: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

// The sandbox's own events carry its ID as container_id, as containerd sends them (kubelet's
// evented PLEG drops its cache of a pod on the DELETED event of the pod's sandbox).
var sandboxEventTypes = map[sandbox.EventType]runtimeapi.ContainerEventType{
	sandbox.EventCreated: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	sandbox.EventStarted: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	sandbox.EventStopped: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	sandbox.EventDeleted: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

// containerEvent builds the event of a container's change with the statuses of its pod as
// they are now, from memory (DESIGN.md section 7).
func (s *Server) containerEvent(e container.Event) *runtimeapi.ContainerEventResponse {
	podID := e.Container.PodSandboxID
	return &runtimeapi.ContainerEventResponse{
		ContainerId:        e.Container.ID,
		ContainerEventType: containerEventTypes[e.Type],
		CreatedAt:          time.Now().UnixNano(),
		PodSandboxStatus:   s.eventPodStatus(podID, nil),
		ContainersStatuses: s.podContainerStatuses(podID),
	}
}

// sandboxEvent builds the event of a sandbox's own change.
func (s *Server) sandboxEvent(e sandbox.Event) *runtimeapi.ContainerEventResponse {
	r := &runtimeapi.ContainerEventResponse{
		ContainerId:        e.Sandbox.ID,
		ContainerEventType: sandboxEventTypes[e.Type],
		CreatedAt:          time.Now().UnixNano(),
		PodSandboxStatus:   s.eventPodStatus(e.Sandbox.ID, e.Sandbox),
	}
	// A pod that was just created and started has no container yet: no need to look.
	if e.Type != sandbox.EventCreated && e.Type != sandbox.EventStarted {
		r.ContainersStatuses = s.podContainerStatuses(e.Sandbox.ID)
	}
	return r
}

// eventPodStatus is the pod's status as PodSandboxStatus reports it, or, once the sandbox is
// gone (its DELETED event), last's: kubelet ignores an event without one.
func (s *Server) eventPodStatus(podID string, last *sandbox.Sandbox) *runtimeapi.PodSandboxStatus {
	sb := last
	if s.opts.Sandboxes != nil {
		if cur, err := s.opts.Sandboxes.Get(podID); err == nil {
			sb = cur
		}
	}
	if sb == nil {
		return nil
	}
	return podSandboxStatus(s.withInitState(sb))
}
