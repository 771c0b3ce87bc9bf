package e2e

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodSurvivesMonitorKill kills a pod's monitor with SIGKILL while the daemon runs (an
// operator's kill -9, the OOM killer) and checks that the daemon reports the pod's
// containers EXITED 255 "Unknown" saying why, that what was left of them is killed, and that
// the containers and the pod can be stopped and removed completely. The pod used to stay
// unremovable until the daemon restarted.
func TestPodSurvivesMonitorKill(t *testing.T) {
	e := newPodEnv(t, "monitor-kill")
	ctx := context.Background()
	running := e.run(t, "running", "sleep 600 & exec sleep 600", "running.log")
	cr, err := e.c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: e.podID, SandboxConfig: e.podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "created"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  []string{"sleep", "600"},
		}})
	if err != nil {
		t.Fatalf("create container: %v\n%s", err, e.d.output.String())
	}
	created := cr.ContainerId
	pid := containerPid(t, e.c, running)
	var procs []int
	for deadline := time.Now().Add(10 * time.Second); len(procs) < 2; time.Sleep(20 * time.Millisecond) {
		procs = append([]int{pid}, childPids(pid)...)
		if time.Now().After(deadline) {
			t.Fatalf("container's child process did not start: %v", procs)
		}
	}

	mons := monitorPids(t, e.podID)
	if len(mons) != 1 {
		t.Fatalf("monitors of the pod: %v, want one", mons)
	}
	mon, _ := strconv.Atoi(mons[0])
	if err := syscall.Kill(mon, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// Without any request, the running container converges to the view a restart gives.
	st := waitExited(t, e.c, running)
	checkMonitorDied(t, st.Status)
	for _, p := range procs {
		if processRuns(p) {
			t.Errorf("process %d of the container runs on after its monitor died", p)
		}
	}
	list, err := e.c.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil || len(list.Containers) != 0 {
		t.Errorf("running containers after the monitor died: %v, %v", list.GetContainers(), err)
	}
	_, err = e.c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: running, Cmd: []string{"true"}, Timeout: 5})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ExecSync in a container of a dead monitor = %v, want FailedPrecondition", err)
	}

	// The created one is settled when it is stopped.
	if _, err := e.c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: created, Timeout: 2}); err != nil {
		t.Fatalf("stop the created container: %v\n%s", err, e.d.output.String())
	}
	cs, err := e.c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: created})
	if err != nil {
		t.Fatal(err)
	}
	checkMonitorDied(t, cs.Status)
	if _, err := e.c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: running, Timeout: 2}); err != nil {
		t.Errorf("stop the exited container: %v", err)
	}
	// kubelet restarts the pod's containers: the pod gets a new monitor, as one that had
	// none, and the new container runs.
	again := e.run(t, "again", "exec sleep 600", "again.log")
	if st, err := e.c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: again}); err != nil ||
		st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container started after the monitor died: %v, %v", st.GetStatus().GetState(), err)
	}
	if mons := monitorPids(t, e.podID); len(mons) != 1 || mons[0] == strconv.Itoa(mon) {
		t.Errorf("monitors of the pod: %v, want a new one", mons)
	}
	if _, err := e.c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: running}); err != nil {
		t.Fatalf("remove container after its monitor died: %v\n%s", err, e.d.output.String())
	}
	if _, err := e.c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: e.podID}); err != nil {
		t.Fatalf("stop pod after its monitor died: %v\n%s", err, e.d.output.String())
	}
	if _, err := e.c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: e.podID}); err != nil {
		t.Fatalf("remove pod after its monitor died: %v\n%s", err, e.d.output.String())
	}
	if _, err := e.c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: created}); status.Code(err) != codes.NotFound {
		t.Errorf("container of the removed pod: %v, want NotFound", err)
	}
	assertNothingLeft(t, e.dirs, e.podID)
}

func checkMonitorDied(t *testing.T, st *runtimeapi.ContainerStatus) {
	t.Helper()
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 255 || st.Reason != "Unknown" ||
		!strings.Contains(st.Message, "monitor died") {
		t.Errorf("container %s: %v %d %q %q; want EXITED 255 Unknown, with the monitor's death the message",
			st.Metadata.GetName(), st.State, st.ExitCode, st.Reason, st.Message)
	}
}
