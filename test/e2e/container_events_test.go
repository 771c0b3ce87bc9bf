package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	createdEvent = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	startedEvent = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	stoppedEvent = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	deletedEvent = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

// eventLog receives a GetContainerEvents stream in the background.
type eventLog struct {
	events chan *runtimeapi.ContainerEventResponse
	errs   chan error
}

func watchEvents(t *testing.T, c runtimeapi.RuntimeServiceClient) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	// The headers come once the daemon has subscribed the stream: nothing after is missed.
	if _, err := st.Header(); err != nil {
		t.Fatalf("GetContainerEvents header: %v", err)
	}
	l := &eventLog{events: make(chan *runtimeapi.ContainerEventResponse, 100), errs: make(chan error, 1)}
	go func() {
		for {
			ev, err := st.Recv()
			if err != nil {
				l.errs <- err
				return
			}
			l.events <- ev
		}
	}()
	return l
}

// next returns the next event, which must be typ for id.
func (l *eventLog) next(t *testing.T, typ runtimeapi.ContainerEventType, id, name string) *runtimeapi.ContainerEventResponse {
	t.Helper()
	select {
	case ev := <-l.events:
		if ev.ContainerEventType != typ || ev.ContainerId != id {
			t.Fatalf("event: got %v %s, want %v %s (%s)", ev.ContainerEventType, ev.ContainerId, typ, id, name)
		}
		if ev.CreatedAt == 0 {
			t.Errorf("%v %s: created_at not set", typ, name)
		}
		return ev
	case err := <-l.errs:
		t.Fatalf("event stream ended waiting for %v %s: %v", typ, name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no %v event for %s within 30s", typ, name)
	}
	return nil
}

// checkPod checks the event's pod status: the pod, in state.
func checkPod(t *testing.T, ev *runtimeapi.ContainerEventResponse, podID, podName string, state runtimeapi.PodSandboxState) {
	t.Helper()
	st := ev.PodSandboxStatus
	if st.GetId() != podID || st.GetMetadata().GetName() != podName || st.GetState() != state {
		t.Errorf("%v %s: pod status %s %s %v, want %s %s %v", ev.ContainerEventType, ev.ContainerId,
			st.GetId(), st.GetMetadata().GetName(), st.GetState(), podID, podName, state)
	}
}

// statusOf returns the container's status in the event, nil when absent.
func statusOf(ev *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, st := range ev.ContainersStatuses {
		if st.Id == id {
			return st
		}
	}
	return nil
}

// checkContainer checks the container's status in the event: in state, and, once exited,
// with the exit code.
func checkContainer(t *testing.T, ev *runtimeapi.ContainerEventResponse, id string, state runtimeapi.ContainerState, exitCode int32) {
	t.Helper()
	st := statusOf(ev, id)
	if st == nil {
		t.Errorf("%v %s: no status of %s among %d", ev.ContainerEventType, ev.ContainerId, id, len(ev.ContainersStatuses))
		return
	}
	if st.State != state || (state == runtimeapi.ContainerState_CONTAINER_EXITED && st.ExitCode != exitCode) {
		t.Errorf("%v %s: container %s is %v exit %d, want %v exit %d", ev.ContainerEventType, ev.ContainerId, id, st.State, st.ExitCode, state, exitCode)
	}
}

// TestContainerEvents follows a pod's life through GetContainerEvents: the exact events,
// in order, each with the pod's and its containers' statuses as the change left them.
func TestContainerEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a daemon that creates namespaces, mounts and cgroups")
	}
	dirs := newDaemonDirs(t)
	certs := busyboxMirror(t, dirs.base)
	const podName = "events-pod"
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: podName, Namespace: "e2e", Uid: "e2e-events"}}
	extra, adapt := podNetwork(t, dirs)
	adapt(podCfg)
	cfgPath := dirs.writeConfig(t, extra+"[registry]\nconfig_path = \""+certs+"\"\n")
	ctx := context.Background()
	d := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	if _, err := imageClient(t, dirs.socket).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, d.output.String())
	}
	l := watchEvents(t, c)
	other := watchEvents(t, c) // a second subscriber (kubelet and crictl) sees the same

	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, d.output.String())
	}
	podID := pr.PodSandboxId
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	ready, notReady := runtimeapi.PodSandboxState_SANDBOX_READY, runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	created, running, exited := runtimeapi.ContainerState_CONTAINER_CREATED, runtimeapi.ContainerState_CONTAINER_RUNNING, runtimeapi.ContainerState_CONTAINER_EXITED
	checkPod(t, l.next(t, createdEvent, podID, "pod"), podID, podName, ready)
	checkPod(t, l.next(t, startedEvent, podID, "pod"), podID, podName, ready)

	mk := func(name string, cmd ...string) string {
		t.Helper()
		cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  cmd,
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: ownPIDNamespace(nil)},
		}})
		if err != nil {
			t.Fatalf("create container %s: %v\n%s", name, err, d.output.String())
		}
		ev := l.next(t, createdEvent, cr.ContainerId, name)
		checkPod(t, ev, podID, podName, ready)
		checkContainer(t, ev, cr.ContainerId, created, 0)
		return cr.ContainerId
	}
	start := func(id, name string) {
		t.Helper()
		if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("start container %s: %v\n%s", name, err, d.output.String())
		}
		// Running in its STARTED event even when it exits at once: the exit is a later change.
		checkContainer(t, l.next(t, startedEvent, id, name), id, running, 0)
	}

	// One that exits by itself: its exit is reported by the daemon's watcher.
	done := mk("done", "sh", "-c", "exit 3")
	start(done, "done")
	ev := l.next(t, stoppedEvent, done, "done")
	checkPod(t, ev, podID, podName, ready)
	checkContainer(t, ev, done, exited, 3)

	// One that is stopped.
	sleeper := mk("sleeper", "sleep", "1000")
	start(sleeper, "sleeper")
	if _, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: sleeper, Timeout: 0}); err != nil {
		t.Fatalf("stop container: %v", err)
	}
	ev = l.next(t, stoppedEvent, sleeper, "sleeper")
	checkContainer(t, ev, sleeper, exited, 137)
	checkContainer(t, ev, done, exited, 3)

	// One left created, removed with its pod.
	idle := mk("idle", "sleep", "1000")

	for _, x := range []struct{ id, name string }{{done, "done"}, {sleeper, "sleeper"}} {
		if _, err := c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: x.id}); err != nil {
			t.Fatalf("remove container %s: %v", x.name, err)
		}
		ev := l.next(t, deletedEvent, x.id, x.name)
		checkPod(t, ev, podID, podName, ready)
		if statusOf(ev, x.id) != nil {
			t.Errorf("DELETED %s: still among the pod's containers", x.name)
		}
	}

	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove pod: %v", err)
	}
	// The pod's removal stops and removes what it still has, then stops and removes itself.
	checkContainer(t, l.next(t, stoppedEvent, idle, "idle"), idle, exited, 137)
	if ev := l.next(t, deletedEvent, idle, "idle"); statusOf(ev, idle) != nil {
		t.Errorf("DELETED idle: still among the pod's containers")
	}
	checkPod(t, l.next(t, stoppedEvent, podID, "pod"), podID, podName, notReady)
	ev = l.next(t, deletedEvent, podID, "pod")
	checkPod(t, ev, podID, podName, notReady)
	if len(ev.ContainersStatuses) != 0 {
		t.Errorf("DELETED pod: %d container statuses, want none", len(ev.ContainersStatuses))
	}

	// The second subscriber saw the same sequence.
	want := []string{
		fmt.Sprint(createdEvent, podID), fmt.Sprint(startedEvent, podID),
		fmt.Sprint(createdEvent, done), fmt.Sprint(startedEvent, done), fmt.Sprint(stoppedEvent, done),
		fmt.Sprint(createdEvent, sleeper), fmt.Sprint(startedEvent, sleeper), fmt.Sprint(stoppedEvent, sleeper),
		fmt.Sprint(createdEvent, idle), fmt.Sprint(deletedEvent, done), fmt.Sprint(deletedEvent, sleeper),
		fmt.Sprint(stoppedEvent, idle), fmt.Sprint(deletedEvent, idle),
		fmt.Sprint(stoppedEvent, podID), fmt.Sprint(deletedEvent, podID),
	}
	for i, w := range want {
		select {
		case ev := <-other.events:
			if got := fmt.Sprint(ev.ContainerEventType, ev.ContainerId); got != w {
				t.Fatalf("second subscriber, event %d: got %s, want %s", i, got, w)
			}
		case err := <-other.errs:
			t.Fatalf("second subscriber ended at event %d: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("second subscriber: no event %d (%s)", i, w)
		}
	}
	select {
	case ev := <-l.events:
		t.Errorf("unexpected event %v %s", ev.ContainerEventType, ev.ContainerId)
	case <-time.After(200 * time.Millisecond):
	}
}
