package cri

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// subscribeEvents opens a GetContainerEvents stream and returns once the server has
// subscribed it (the response headers say so).
func subscribeEvents(t *testing.T, ctx context.Context, c runtimeapi.RuntimeServiceClient) runtimeapi.RuntimeService_GetContainerEventsClient {
	t.Helper()
	st, err := c.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	if _, err := st.Header(); err != nil {
		t.Fatalf("GetContainerEvents header: %v", err)
	}
	return st
}

func event(i int) *runtimeapi.ContainerEventResponse {
	return &runtimeapi.ContainerEventResponse{ContainerId: fmt.Sprintf("c%d", i), CreatedAt: int64(i)}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (ev *Events) count() int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.subs)
}

// Two subscribers each get every event, in the order published; a subscriber whose
// context ends is removed, and nothing of either stays behind.
func TestContainerEventsFanOut(t *testing.T) {
	srv := NewServer(Options{Config: config.Default()})
	c := dial(t, srv)
	if _, err := c.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()

	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	subs := []runtimeapi.RuntimeService_GetContainerEventsClient{subscribeEvents(t, ctx1, c), subscribeEvents(t, ctx2, c)}
	if n := srv.events.count(); n != 2 {
		t.Fatalf("%d subscribers, want 2", n)
	}
	const n = 200 // fewer than the buffer: publishing never waits on the readers
	for i := range n {
		srv.events.publish(event(i))
	}
	for k, st := range subs {
		for i := range n {
			got, err := st.Recv()
			if err != nil {
				t.Fatalf("subscriber %d, event %d: %v", k, i, err)
			}
			if got.ContainerId != event(i).ContainerId {
				t.Fatalf("subscriber %d, event %d: got %s, want %s", k, i, got.ContainerId, event(i).ContainerId)
			}
		}
	}

	cancel1()
	waitFor(t, "the cancelled subscriber to be removed", func() bool { return srv.events.count() == 1 })
	srv.events.publish(event(n))
	if got, err := subs[1].Recv(); err != nil || got.ContainerId != event(n).ContainerId {
		t.Fatalf("remaining subscriber: got %v, %v", got, err)
	}
	cancel2()
	waitFor(t, "both subscribers to be removed", func() bool { return srv.events.count() == 0 })
	waitFor(t, "the streams' goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

// blockingStream is a GetContainerEvents stream whose Send waits for release: a client
// that does not read.
type blockingStream struct {
	grpc.ServerStream
	ctx     context.Context
	release chan struct{}
	sending chan struct{} // told (when not full) that Send was entered

	mu   sync.Mutex
	sent []string
}

func (b *blockingStream) Context() context.Context     { return b.ctx }
func (b *blockingStream) SendHeader(metadata.MD) error { return nil }

func (b *blockingStream) Send(r *runtimeapi.ContainerEventResponse) error {
	select {
	case b.sending <- struct{}{}:
	default:
	}
	if b.release != nil {
		<-b.release
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, r.ContainerId)
	return nil
}

func (b *blockingStream) ids() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.sent...)
}

// A subscriber that falls behind by more than the buffer is ended with ResourceExhausted
// after the events it was owed; publishing never waits for it, and the other subscriber
// keeps receiving.
func TestContainerEventsSlowSubscriber(t *testing.T) {
	const buffer = 4
	srv := NewServer(Options{Config: config.Default(), Events: NewEvents(buffer)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	fast := &blockingStream{ctx: ctx}
	slow := &blockingStream{ctx: ctx, release: make(chan struct{}), sending: make(chan struct{}, 1)}
	fastErr, slowErr := make(chan error, 1), make(chan error, 1)
	go func() { fastErr <- srv.GetContainerEvents(&runtimeapi.GetEventsRequest{}, fast) }()
	go func() { slowErr <- srv.GetContainerEvents(&runtimeapi.GetEventsRequest{}, slow) }()
	waitFor(t, "two subscribers", func() bool { return srv.events.count() == 2 })

	publish := func(i int) {
		done := make(chan struct{})
		go func() { srv.events.publish(event(i)); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("publishing event %d blocked on a slow subscriber", i)
		}
		waitFor(t, fmt.Sprintf("the fast subscriber to get event %d", i), func() bool { return len(fast.ids()) == i+1 })
	}
	publish(0)
	<-slow.sending // the slow one holds event 0 in Send; its queue is empty
	for i := 1; i <= buffer; i++ {
		publish(i) // fills the slow one's queue
	}
	if n := srv.events.count(); n != 2 {
		t.Fatalf("%d subscribers with a full queue, want 2 (not behind yet)", n)
	}
	publish(buffer + 1) // one more than it can hold: it is dropped
	if n := srv.events.count(); n != 1 {
		t.Fatalf("%d subscribers after the overflow, want 1", n)
	}
	publish(buffer + 2) // the fast one keeps receiving

	close(slow.release)
	err := <-slowErr
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("slow subscriber ended with %v, want ResourceExhausted", err)
	}
	want := []string{"c0", "c1", "c2", "c3", "c4"} // what it held before the first lost event
	if got := slow.ids(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("slow subscriber got %v, want %v", got, want)
	}
	cancel()
	if err := <-fastErr; err != nil {
		t.Fatalf("fast subscriber ended with %v, want nil on context end", err)
	}
	if n := srv.events.count(); n != 0 {
		t.Fatalf("%d subscribers left", n)
	}
}

// The events of a container and of a sandbox carry the pod's status and its containers'
// statuses as they are when the event is sent, and the sandbox's own events name it.
func TestContainerEventTranslation(t *testing.T) {
	sbs := fixedSandboxes()
	ctrs := fixedContainers()
	srv := NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: sbs}, Containers: listedContainers{items: ctrs}})

	got := srv.containerEvent(container.Event{Type: container.EventStopped, Container: *ctrs[1]})
	if got.ContainerId != "c2aaa" || got.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
		t.Fatalf("event = %s %v", got.ContainerId, got.ContainerEventType)
	}
	if got.PodSandboxStatus.GetId() != "aaa111" || got.PodSandboxStatus.GetMetadata().GetUid() != "u-aaa111" ||
		got.PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod status = %v", got.PodSandboxStatus)
	}
	var ids []string
	for _, st := range got.ContainersStatuses {
		ids = append(ids, st.Id+"="+st.State.String())
	}
	if fmt.Sprint(ids) != "[c1aaa=CONTAINER_RUNNING c2aaa=CONTAINER_EXITED]" {
		t.Fatalf("container statuses = %v", ids)
	}
	if got.CreatedAt == 0 {
		t.Fatal("created_at not set")
	}

	// A removed sandbox is reported with the last state it had.
	gone := &sandbox.Sandbox{ID: "ddd555", State: sandbox.StateNotReady, Config: sandbox.Config{Name: "n", Namespace: "ns", UID: "u-ddd555"}}
	got = srv.sandboxEvent(sandbox.Event{Type: sandbox.EventDeleted, Sandbox: gone})
	if got.ContainerId != "ddd555" || got.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT ||
		got.PodSandboxStatus.GetId() != "ddd555" || got.PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY ||
		len(got.ContainersStatuses) != 0 {
		t.Fatalf("deleted sandbox event = %v", got)
	}
}
