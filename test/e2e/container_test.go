package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
)

// testImagesDir is the OCI layout of test images that test/critest/run.sh builds, or
// $CRI_MINI_TEST_IMAGES (a test binary run on another machine, such as the cgroup v2 VM).
func testImagesDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "_output", "test-images")
	if d := os.Getenv("CRI_MINI_TEST_IMAGES"); d != "" {
		dir = d
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Skipf("no test images in %s (test/critest/run.sh builds them): %v", dir, err)
	}
	return dir
}

// busyboxMirror serves docker.io/library/busybox:latest from the test images on a
// registry at 127.0.0.1 and returns a registry config dir that mirrors docker.io to it.
func busyboxMirror(t *testing.T, base string) string {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(testImagesDir(t))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	pushed := false
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] != "docker.io/library/busybox:latest" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(host + "/library/busybox:latest")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("push busybox: %v", err)
		}
		pushed = true
	}
	if !pushed {
		t.Skip("the test images have no docker.io/library/busybox:latest")
	}
	dir := filepath.Join(base, "certs.d")
	if err := os.MkdirAll(filepath.Join(dir, "docker.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := "server = \"https://docker.io\"\n[host.\"http://" + host + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "docker.io", "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitLogLine waits (bounded) until the CRI log file has a line with the stream, tag and
// content given.
func waitLogLine(t *testing.T, path, stream, tag, content string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				fields := strings.SplitN(sc.Text(), " ", 4)
				if len(fields) == 4 && fields[1] == stream && fields[2] == tag && fields[3] == content {
					f.Close()
					return
				}
			}
			f.Close()
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(path)
			t.Fatalf("log %s has no %q line within 10s:\n%s", path, stream+" "+tag+" "+content, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestContainerLifecycle runs a busybox container in a pod through create, start, status,
// its log, stop and remove, then removes the pod and checks that nothing is left: no mount
// under the daemon's dirs, no container or pod cgroup, no monitor process.
func TestContainerLifecycle(t *testing.T) {
	cniBin := cnitest.BinDir(t)
	cnitest.NeedRoot(t)
	dirs := newDaemonDirs(t)
	certs := busyboxMirror(t, dirs.base)
	newE2ENet(t, dirs)
	cfgPath := dirs.writeConfig(t, "bin_dirs = [\""+cniBin+"\"]\n[registry]\nconfig_path = \""+certs+"\"\n")
	ctx := context.Background()
	d := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	ic := imageClient(t, dirs.socket)

	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, d.output.String())
	}
	logDir := filepath.Join(dirs.base, "logs")
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "ctr-pod", Namespace: "e2e", Uid: "e2e-ctr-uid"},
		LogDirectory: logDir,
	}
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, d.output.String())
	}
	podID := pr.PodSandboxId
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	})

	// Invalid requests name the field.
	for _, tc := range []struct {
		name  string
		req   *runtimeapi.CreateContainerRequest
		field string
	}{
		{"no pod", &runtimeapi.CreateContainerRequest{Config: &runtimeapi.ContainerConfig{}}, "pod_sandbox_id"},
		{"no config", &runtimeapi.CreateContainerRequest{PodSandboxId: podID}, "config"},
		{"no name", &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{}, Image: &runtimeapi.ImageSpec{Image: "busybox"}}}, "config.metadata.name"},
		{"no image", &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "x"}}}, "config.image.image"},
	} {
		if _, err := c.CreateContainer(ctx, tc.req); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v does not name %s", tc.name, err, tc.field)
		}
	}

	ctrCfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "hello"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", "echo hello; sleep 3600"},
		LogPath:  "hello/0.log",
		Labels:   map[string]string{"app": "hello"},
	}
	cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: ctrCfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("create container: %v\n%s", err, d.output.String())
	}
	id := cr.ContainerId
	if _, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: ctrCfg, SandboxConfig: podCfg}); err == nil {
		t.Fatal("a second container with the same name and attempt was created")
	}
	if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("start container: %v\n%s", err, d.output.String())
	}
	st, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("state %v, want RUNNING", st.Status.State)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("verbose info has no pid (%v): %s", err, st.Info["info"])
	}
	if err := syscall.Kill(info.Pid, 0); err != nil {
		t.Fatalf("container pid %d: %v", info.Pid, err)
	}
	logPath := filepath.Join(logDir, "hello", "0.log")
	if st.Status.LogPath != logPath {
		t.Fatalf("log path %q, want %q", st.Status.LogPath, logPath)
	}
	waitLogLine(t, logPath, "stdout", "F", "hello")

	// One monitor for the pod, outside the daemon's cgroup (it must outlive the daemon).
	pids := monitorPids(t, podID)
	if len(pids) != 1 {
		t.Fatalf("monitors of the pod: %v, want one", pids)
	}
	if cg, err := os.ReadFile(filepath.Join("/proc", pids[0], "cgroup")); err != nil || !strings.Contains(string(cg), "/cri-mini-monitors") {
		t.Errorf("monitor cgroups (%v):\n%s", err, cg)
	}

	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   int
	}{
		{"all", nil, 1},
		{"id prefix", &runtimeapi.ContainerFilter{Id: id[:12]}, 1},
		{"pod prefix", &runtimeapi.ContainerFilter{PodSandboxId: podID[:12]}, 1},
		{"running", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}, 1},
		{"exited", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, 0},
		{"label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "hello"}}, 1},
		{"other label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "other"}}, 0},
		{"unknown id", &runtimeapi.ContainerFilter{Id: "ffffffffffff"}, 0},
	} {
		l, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: tc.filter})
		if err != nil || len(l.Containers) != tc.want {
			t.Errorf("list %s: %d containers (%v), want %d", tc.name, len(l.GetContainers()), err, tc.want)
		}
	}

	if _, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatalf("stop container: %v\n%s", err, d.output.String())
	}
	if err := syscall.Kill(info.Pid, 0); err == nil {
		t.Errorf("container pid %d still exists after stop", info.Pid)
	}
	st, err = c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || (st.Status.ExitCode != 137 && st.Status.ExitCode != 143) ||
		st.Status.Reason != "Error" || st.Status.FinishedAt == 0 {
		t.Fatalf("after stop: state %v exit %d reason %q finished %d, want EXITED 137/143 Error", st.Status.State,
			st.Status.ExitCode, st.Status.Reason, st.Status.FinishedAt)
	}
	// Stop and remove are idempotent.
	if _, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("remove container: %v\n%s", err, d.output.String())
	}
	if _, err := c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err == nil {
		t.Fatal("status of a removed container succeeded")
	}
	for _, p := range podCgroupDirs(podID) {
		if _, err := os.Stat(filepath.Join(p, id)); !os.IsNotExist(err) {
			t.Errorf("container cgroup %s/%s left: %v", p, id, err)
		}
	}

	// A missing command fails CreateContainer and leaves nothing behind.
	if _, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "missing"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"/does-not-exist"},
	}}); err == nil {
		t.Fatal("creating a container with a missing command succeeded")
	}
	if l, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil || len(l.Containers) != 0 {
		t.Fatalf("containers after a failed create: %v, %v", l.GetContainers(), err)
	}
	// A command that exits by itself is seen as EXITED with its code, without a Stop; the
	// pod's removal removes it.
	bad, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "fails"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", "exit 3"},
	}})
	if err != nil {
		t.Fatalf("create container: %v\n%s", err, d.output.String())
	}
	if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: bad.ContainerId}); err != nil {
		t.Fatalf("start container: %v\n%s", err, d.output.String())
	}
	st = waitExited(t, c, bad.ContainerId)
	if st.Status.ExitCode != 3 || st.Status.Reason != "Error" {
		t.Errorf("after exit 3: exit %d reason %q, want 3 Error", st.Status.ExitCode, st.Status.Reason)
	}

	if _, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("stop pod: %v\n%s", err, d.output.String())
	}
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove pod: %v\n%s", err, d.output.String())
	}
	if _, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: bad.ContainerId}); err == nil {
		t.Error("container of a removed pod still known")
	}
	assertNothingLeft(t, dirs, podID)
}

// assertNothingLeft checks that no mount under the daemon's dirs, no pod cgroup and no
// monitor of the pod remain.
func assertNothingLeft(t *testing.T, dirs daemonDirs, podID string) {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (strings.HasPrefix(f[4], dirs.root+"/") || strings.HasPrefix(f[4], dirs.state+"/")) {
			t.Errorf("mount left: %s", f[4])
		}
	}
	for _, p := range podCgroupDirs(podID) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("pod cgroup %s left: %v", p, err)
		}
	}
	if pids := monitorPids(t, podID); len(pids) != 0 {
		t.Errorf("monitor of pod %s still runs: pids %v", podID, pids)
	}
	entries, _ := os.ReadDir(filepath.Join(dirs.state, "mon"))
	if len(entries) != 0 {
		t.Errorf("monitor dirs left: %d", len(entries))
	}
	entries, _ = os.ReadDir(filepath.Join(dirs.root, "containers"))
	if len(entries) != 0 {
		t.Errorf("container dirs left: %d", len(entries))
	}
}

// TestContainerSurvivesDaemonKill kills the daemon with SIGKILL while a container runs and
// checks that the restarted daemon reports it RUNNING from its monitor with the same pid,
// that its log has no gap across the restart, that it notices its exit when it is killed
// from outside, and that it removes the pod completely.
func TestContainerSurvivesDaemonKill(t *testing.T) {
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
	logDir := filepath.Join(dirs.base, "logs")
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "kill-pod", Namespace: "e2e", Uid: "e2e-kill-uid"},
		LogDirectory: logDir}
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, first.output.String())
	}
	podID := pr.PodSandboxId
	cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "counter"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", counterScript},
		LogPath:  "counter/0.log",
	}})
	if err != nil {
		t.Fatalf("create container: %v\n%s", err, first.output.String())
	}
	id := cr.ContainerId
	if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("start container: %v\n%s", err, first.output.String())
	}
	pid := containerPid(t, c, id)
	logPath := filepath.Join(logDir, "counter", "0.log")
	waitNumbers(t, logPath, 3)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.done <- <-first.done
	downAt := len(logNumbers(t, logPath))
	time.Sleep(time.Second) // the container keeps logging while no daemon runs

	second := startDaemon(t, dirs.socket, "--config", cfgPath)
	c = client(t, dirs.socket)
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	st, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("restarted daemon lost the container: %v\n%s", err, second.output.String())
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after restart: state %v, want RUNNING", st.Status.State)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("verbose info has no pid (%v): %s", err, st.Info["info"])
	}
	if info.Pid != pid {
		t.Fatalf("pid %d after the restart, %d before", info.Pid, pid)
	}
	waitNumbers(t, logPath, downAt+15)
	if err := syscall.Kill(info.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill container pid %d: %v", info.Pid, err)
	}
	st = waitExited(t, c, id)
	if st.Status.ExitCode != 137 || st.Status.Reason != "Error" {
		t.Fatalf("exit %d reason %q, want 137 Error", st.Status.ExitCode, st.Status.Reason)
	}
	checkContiguous(t, "log across the daemon restart", logNumbers(t, logPath))
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove pod: %v\n%s", err, second.output.String())
	}
	if _, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err == nil {
		t.Fatal("container of a removed pod still known")
	}
	assertNothingLeft(t, dirs, podID)
}

// monitorPids are the processes running "cri-mini monitor" for the pod.
func monitorPids(t *testing.T, podID string) []string {
	t.Helper()
	procs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, p := range procs {
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 3 && args[1] == "monitor" && strings.Contains(string(cmdline), podID) {
			pids = append(pids, p.Name())
		}
	}
	return pids
}

// waitExited waits (bounded) until the container is reported EXITED and returns its status.
func waitExited(t *testing.T, c runtimeapi.RuntimeServiceClient, id string) *runtimeapi.ContainerStatusResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after 10s", id, st.Status.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
