package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
	"github.com/cri-mini/cri-mini/pkg/monitor"
)

// counterScript prints 0, 1, 2, ... one line every 100 ms.
const counterScript = `i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done`

// podEnv is a daemon serving busybox from a local mirror, with one pod that logs under
// logDir.
type podEnv struct {
	dirs    daemonDirs
	cfgPath string
	d       *daemon
	c       runtimeapi.RuntimeServiceClient
	podID   string
	podCfg  *runtimeapi.PodSandboxConfig
	logDir  string
}

func newPodEnv(t *testing.T, name string) *podEnv {
	t.Helper()
	cniBin := cnitest.BinDir(t)
	cnitest.NeedRoot(t)
	e := &podEnv{dirs: newDaemonDirs(t)}
	certs := busyboxMirror(t, e.dirs.base)
	newE2ENet(t, e.dirs)
	e.cfgPath = e.dirs.writeConfig(t, "bin_dirs = [\""+cniBin+"\"]\n[registry]\nconfig_path = \""+certs+"\"\n")
	ctx := context.Background()
	e.d = startDaemon(t, e.dirs.socket, "--config", e.cfgPath)
	e.c = client(t, e.dirs.socket)
	if _, err := imageClient(t, e.dirs.socket).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, e.d.output.String())
	}
	e.logDir = filepath.Join(e.dirs.base, "logs")
	e.podCfg = &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "e2e-" + name + "-uid"},
		LogDirectory: e.logDir,
	}
	pr, err := e.c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: e.podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, e.d.output.String())
	}
	e.podID = pr.PodSandboxId
	t.Cleanup(func() {
		// e.c is the client of whichever daemon runs last.
		_, _ = e.c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: e.podID})
	})
	return e
}

// run creates and starts a busybox container running script, logging to logPath.
func (e *podEnv) run(t *testing.T, name, script, logPath string) string {
	t.Helper()
	return e.runConfig(t, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", script},
		LogPath:  logPath,
	})
}

// runConfig creates and starts a container.
func (e *podEnv) runConfig(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := context.Background()
	cr, err := e.c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: e.podID, SandboxConfig: e.podCfg, Config: cfg})
	if err != nil {
		t.Fatalf("create container: %v\n%s", err, e.d.output.String())
	}
	if _, err := e.c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("start container: %v\n%s", err, e.d.output.String())
	}
	return cr.ContainerId
}

// containerPid is the host pid of a running container, from the verbose status.
func containerPid(t *testing.T, c runtimeapi.RuntimeServiceClient, id string) int {
	t.Helper()
	st, err := c.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("verbose info has no pid (%v): %s", err, st.Info["info"])
	}
	return info.Pid
}

// logNumbers parses a CRI log of counterScript output into its numbers, checking that
// every record is a full stdout line.
func logNumbers(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 || fields[1] != "stdout" || fields[2] != "F" {
			t.Fatalf("%s: unexpected record %q", path, sc.Text())
		}
		n, err := strconv.Atoi(fields[3])
		if err != nil {
			t.Fatalf("%s: record %q is not a number", path, sc.Text())
		}
		out = append(out, n)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitNumbers waits (bounded) until the log at path holds at least n numbers.
func waitNumbers(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil && len(logNumbers(t, path)) >= n {
			return
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(path)
			t.Fatalf("log %s has fewer than %d lines after 20s:\n%s", path, n, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkContiguous fails unless nums is 0, 1, 2, ... with no gap and no repeat.
func checkContiguous(t *testing.T, what string, nums []int) {
	t.Helper()
	for i, n := range nums {
		if n != i {
			t.Fatalf("%s: line %d is %d, want %d (lost or repeated output): %v", what, i, n, i, nums)
		}
	}
}

// TestContainerLogRotation rotates a container's log as kubelet does (rename, then
// ReopenContainerLog): every line is in exactly one of the two files, in order, and
// the lines after the reopen are in the new file.
func TestContainerLogRotation(t *testing.T) {
	e := newPodEnv(t, "rotate-pod")
	ctx := context.Background()
	id := e.run(t, "counter", counterScript, "counter/0.log")
	logPath := filepath.Join(e.logDir, "counter", "0.log")
	waitNumbers(t, logPath, 5)
	rotated := logPath + ".20260101-000000"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	// Lines written between the rename and the reopen still go to the renamed file.
	time.Sleep(250 * time.Millisecond)
	if _, err := e.c.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatalf("reopen log: %v\n%s", err, e.d.output.String())
	}
	waitNumbers(t, logPath, 10)
	old := logNumbers(t, rotated) // complete: nothing is written to it after the reopen
	if _, err := e.c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	cur := logNumbers(t, logPath)
	if len(old) < 5 || len(cur) < 10 {
		t.Fatalf("old file %v, new file %v: too short", old, cur)
	}
	if cur[0] <= old[len(old)-1] {
		t.Errorf("new file starts at %d, old file ends at %d: lines after the reopen must go to the new file", cur[0], old[len(old)-1])
	}
	checkContiguous(t, "old and new log files", append(old, cur...))
	t.Logf("old file: 0..%d, new file: %d..%d", old[len(old)-1], cur[0], cur[len(cur)-1])
	// A reopen of a stopped container is refused, as there is no log being written.
	if _, err := e.c.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err == nil {
		t.Error("reopen of an exited container succeeded")
	}
}

// TestContainerExitWhileDaemonDown: a container exits while the daemon is killed; the
// restarted daemon reports the exit from the monitor's exit record: code and time.
func TestContainerExitWhileDaemonDown(t *testing.T) {
	e := newPodEnv(t, "exit-pod")
	ctx := context.Background()
	id := e.run(t, "exiter", "sleep 2; exit 3", "exiter/0.log")
	pid := containerPid(t, e.c, id)
	if err := e.d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	e.d.done <- <-e.d.done
	// The monitor reaps the container: its pid disappears when it has exited.
	var gone time.Time
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			gone = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container pid %d still there after 20s", pid)
		}
	}
	recs, err := filepath.Glob(filepath.Join(e.dirs.state, "mon", "*", "containers", id))
	if err != nil || len(recs) != 1 {
		t.Fatalf("monitor state of the container: %v, %v", recs, err)
	}
	var rec monitor.ExitRecord
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rec, err = monitor.ReadExit(recs[0]); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exit record written with the daemon down: %v", err)
		}
	}

	second := startDaemon(t, e.dirs.socket, "--config", e.cfgPath)
	e.c = client(t, e.dirs.socket)
	// Registered after the second daemon: cleanups run last first, so this one runs while
	// the daemon still serves.
	t.Cleanup(func() {
		_, _ = e.c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: e.podID})
	})
	st, err := e.c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("restarted daemon lost the container: %v\n%s", err, second.output.String())
	}
	s := st.Status
	if s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 3 || s.Reason != "Error" {
		t.Fatalf("after restart: %v exit %d reason %q, want EXITED 3 Error", s.State, s.ExitCode, s.Reason)
	}
	finished, started := time.Unix(0, s.FinishedAt), time.Unix(0, s.StartedAt)
	if !finished.Equal(rec.FinishedAt) {
		t.Errorf("finished_at %v, exit record %v", finished, rec.FinishedAt)
	}
	if d := gone.Sub(finished); d < -time.Second || d > time.Second {
		t.Errorf("finished_at %v is %v away from the observed exit %v", finished, d, gone)
	}
	if ran := finished.Sub(started); ran < 1900*time.Millisecond || ran > 10*time.Second {
		t.Errorf("started_at %v, finished_at %v: ran %v, want about 2s", started, finished, ran)
	}
	t.Logf("ran %v; exit observed %v after the record's time", finished.Sub(started), gone.Sub(finished))
	if _, err := e.c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: e.podID}); err != nil {
		t.Fatalf("remove pod: %v\n%s", err, second.output.String())
	}
	assertNothingLeft(t, e.dirs, e.podID)
}
