package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
)

// pauseCmdline is what /proc/<pid>/cmdline of a pod init reads.
const pauseCmdline = "cri-mini\x00pause\x00"

// podInitPid reads the pod init's PID from PodSandboxStatus's verbose info, and checks the
// status carries the pod's containers.
func podInitPid(t *testing.T, c runtimeapi.RuntimeServiceClient, podID string, containers int) int {
	t.Helper()
	st, err := c.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.ContainersStatuses) != containers || st.Timestamp == 0 {
		t.Errorf("PodSandboxStatus has %d container statuses and timestamp %d, want %d and a time",
			len(st.ContainersStatuses), st.Timestamp, containers)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("verbose info has no pod init pid (%v): %s", err, st.Info["info"])
	}
	return info.Pid
}

func execOut(t *testing.T, c runtimeapi.RuntimeServiceClient, id string, cmd ...string) string {
	t.Helper()
	r, err := c.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("exec %q: %v (exit %d, stderr %q)", cmd, err, r.GetExitCode(), r.GetStderr())
	}
	return string(r.Stdout)
}

func runIn(t *testing.T, c runtimeapi.RuntimeServiceClient, podID string, podCfg *runtimeapi.PodSandboxConfig, name string, nsOpts *runtimeapi.NamespaceOption, cmd ...string) string {
	t.Helper()
	ctx := context.Background()
	cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  cmd,
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: nsOpts}},
	}})
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("start container %s: %v", name, err)
	}
	return cr.ContainerId
}

func nsPod(name string, o *runtimeapi.NamespaceOption) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "e2e-" + name},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: o}},
	}
}

// TestContainerPIDNamespaces runs a pod sharing one PID namespace (its containers see each
// other, PID 1 is the pod init, which survives a daemon SIGKILL and goes with the pod) and
// a host-PID pod (its container sees the host's PID 1).
func TestContainerPIDNamespaces(t *testing.T) {
	cniBin := cnitest.BinDir(t)
	cnitest.NeedRoot(t)
	dirs := newDaemonDirs(t)
	certs := busyboxMirror(t, dirs.base)
	newE2ENet(t, dirs)
	cfgPath := dirs.writeConfig(t, "bin_dirs = [\""+cniBin+"\"]\n[registry]\nconfig_path = \""+certs+"\"\n")
	ctx := context.Background()
	first := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	if _, err := imageClient(t, dirs.socket).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, first.output.String())
	}

	shared := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}
	podCfg := nsPod("pidns-shared", shared)
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, first.output.String())
	}
	podID := pr.PodSandboxId
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	a := runIn(t, c, podID, podCfg, "a", shared, "sleep", "3601")
	runIn(t, c, podID, podCfg, "b", shared, "sleep", "3602")
	pause := podInitPid(t, c, podID, 2)
	if got := execOut(t, c, a, "cat", "/proc/1/cmdline"); got != pauseCmdline {
		t.Errorf("PID 1 of the pod is %q, want the pod init", got)
	}
	all := execOut(t, c, a, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
	if !strings.Contains(all, "sleep 3601") || !strings.Contains(all, "sleep 3602") {
		t.Errorf("container a does not see both containers: %q", all)
	}

	// Host PID: the container's PID 1 is the node's.
	host := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}
	hostCfg := nsPod("pidns-host", host)
	hr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: hostCfg})
	if err != nil {
		t.Fatalf("run host-PID pod: %v", err)
	}
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: hr.PodSandboxId})
	})
	h := runIn(t, c, hr.PodSandboxId, hostCfg, "h", host, "sleep", "3603")
	want, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if got := execOut(t, c, h, "cat", "/proc/1/cmdline"); !bytes.Equal([]byte(got), want) {
		t.Errorf("host-PID container's PID 1 is %q, want the host's %q", got, want)
	}
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: hr.PodSandboxId}); err != nil {
		t.Fatalf("remove host-PID pod: %v", err)
	}

	checkTarget(t, c)
	checkInitDeath(t, c)

	// The pod init is not the daemon's to lose: it survives a SIGKILL of the daemon.
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.done <- <-first.done
	second := startDaemon(t, dirs.socket, "--config", cfgPath)
	c = client(t, dirs.socket)
	if got := podInitPid(t, c, podID, 2); got != pause {
		t.Fatalf("after a restart the pod init is %d, want %d\n%s", got, pause, second.output.String())
	}
	// A container created after the restart joins the same namespace.
	late := runIn(t, c, podID, podCfg, "late", shared, "sleep", "3604")
	if got := execOut(t, c, late, "cat", "/proc/1/cmdline"); got != pauseCmdline {
		t.Errorf("PID 1 seen by a container created after the restart is %q", got)
	}
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove pod: %v\n%s", err, second.output.String())
	}
	// After the restart the pod init is no longer the daemon's child: once dead it may stay
	// a zombie until the node's init reaps it, which is not the daemon's business.
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pause) + "/cmdline"); err == nil && string(b) == pauseCmdline {
		t.Errorf("pod init %d survived the removal of its pod", pause)
	}
	assertNothingLeft(t, dirs, podID)
}

// checkTarget runs a container in the PID namespace of another (PID mode TARGET, as
// ephemeral containers do) and checks the target's preconditions.
func checkTarget(t *testing.T, c runtimeapi.RuntimeServiceClient) {
	t.Helper()
	ctx := context.Background()
	own := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	podCfg := nsPod("pidns-target", own)
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v", err)
	}
	defer func() {
		if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pr.PodSandboxId}); err != nil {
			t.Errorf("remove pod: %v", err)
		}
	}()
	target := runIn(t, c, pr.PodSandboxId, podCfg, "target", own, "sleep", "3605")
	debug := runIn(t, c, pr.PodSandboxId, podCfg, "debug",
		&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: target}, "sleep", "3606")
	if got := execOut(t, c, debug, "cat", "/proc/1/cmdline"); got != "sleep\x003605\x00" {
		t.Errorf("PID 1 seen by the targeting container is %q, want the target's", got)
	}
	stopped, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pr.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "not-started"},
			Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target string
		code   codes.Code
	}{{stopped.ContainerId, codes.FailedPrecondition}, {"nosuchcontainer", codes.NotFound}} {
		_, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pr.PodSandboxId, SandboxConfig: podCfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "bad-target"},
				Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"true"},
				Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: tc.target}}}}})
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), "target_id") {
			t.Errorf("target %s: %v, want %v naming target_id", tc.target, err, tc.code)
		}
	}
}

// checkInitDeath kills a pod's init from outside: its containers die with the PID
// namespace, the pod turns NOTREADY, and it can still be removed.
func checkInitDeath(t *testing.T, c runtimeapi.RuntimeServiceClient) {
	t.Helper()
	ctx := context.Background()
	shared := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}
	podCfg := nsPod("pidns-init-death", shared)
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v", err)
	}
	id := runIn(t, c, pr.PodSandboxId, podCfg, "victim", shared, "sleep", "3607")
	pause := podInitPid(t, c, pr.PodSandboxId, 1)
	if err := syscall.Kill(pause, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := waitExited(t, c, id); st.Status.ExitCode != 137 {
		t.Errorf("container of a pod whose init was killed: exit %d, want 137", st.Status.ExitCode)
	}
	st, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pr.PodSandboxId})
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod whose init was killed: %v, %v; want NOTREADY", st.GetStatus().GetState(), err)
	}
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pr.PodSandboxId}); err != nil {
		t.Errorf("remove pod whose init was killed: %v", err)
	}
}
