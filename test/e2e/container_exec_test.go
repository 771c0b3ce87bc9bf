package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
)

// TestExecSync runs commands in a running busybox container through the daemon.
func TestExecSync(t *testing.T) {
	cniBin := cnitest.BinDir(t)
	cnitest.NeedRoot(t)
	dirs := newDaemonDirs(t)
	certs := busyboxMirror(t, dirs.base)
	newE2ENet(t, dirs)
	cfgPath := dirs.writeConfig(t, "bin_dirs = [\""+cniBin+"\"]\n[registry]\nconfig_path = \""+certs+"\"\n")
	ctx := context.Background()
	d := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	if _, err := imageClient(t, dirs.socket).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, d.output.String())
	}
	// A PID namespace of its own, so that the container's command is PID 1 (checked below).
	ownPID := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "exec-pod", Namespace: "e2e", Uid: "e2e-exec-uid"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ownPID}}}
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, d.output.String())
	}
	podID := pr.PodSandboxId
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "exec-target"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sleep", "3600"},
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ownPID}},
	}})
	if err != nil {
		t.Fatalf("create container: %v\n%s", err, d.output.String())
	}
	id := cr.ContainerId
	// Exec needs a running container.
	if _, err := c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("exec in a created container: %v, want FailedPrecondition", err)
	}
	if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("start container: %v\n%s", err, d.output.String())
	}

	for _, tc := range []struct {
		name  string
		req   *runtimeapi.ExecSyncRequest
		code  codes.Code
		field string
	}{
		{"no container id", &runtimeapi.ExecSyncRequest{Cmd: []string{"true"}}, codes.InvalidArgument, "container_id"},
		{"no cmd", &runtimeapi.ExecSyncRequest{ContainerId: id}, codes.InvalidArgument, "cmd"},
		{"unknown container", &runtimeapi.ExecSyncRequest{ContainerId: "nosuchcontainer", Cmd: []string{"true"}}, codes.NotFound, ""},
	} {
		_, err := c.ExecSync(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.code, tc.field)
		}
	}

	for _, tc := range []struct {
		name           string
		cmd            []string
		stdout, stderr []byte
		code           int32
	}{
		{"streams and exit code", []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, []byte("out\n"), []byte("err\n"), 3},
		{"large output", []string{"head", "-c", "2000000", "/dev/zero"}, make([]byte, 2000000), nil, 0},
		{"runs in the container", []string{"cat", "/proc/1/cmdline"}, []byte("sleep\x003600\x00"), nil, 0},
		{"missing binary", []string{"/no/such/binary"}, nil, nil, -1},
	} {
		r, err := c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: tc.cmd})
		if tc.code < 0 {
			// A command that cannot start is an error or a non-zero exit, never success.
			if err == nil && r.ExitCode == 0 {
				t.Errorf("%s: succeeded", tc.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v\n%s", tc.name, err, d.output.String())
			continue
		}
		if r.ExitCode != tc.code || !bytes.Equal(r.Stdout, tc.stdout) || !bytes.Equal(r.Stderr, tc.stderr) {
			t.Errorf("%s: exit %d, stdout %d bytes %q, stderr %q; want exit %d, stdout %d bytes, stderr %q",
				tc.name, r.ExitCode, len(r.Stdout), truncate(r.Stdout), r.Stderr, tc.code, len(tc.stdout), tc.stderr)
		}
	}

	start := time.Now()
	_, err = c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "4321"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("exec with timeout: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("exec with a 1s timeout took %v", el)
	}
	if pids := processesWithCmdline("sleep\x004321\x00"); len(pids) > 0 {
		t.Errorf("the timed out exec is still there: pids %v", pids)
	}
	if z := zombieChildren(d.cmd.Process.Pid); len(z) > 0 {
		t.Errorf("the daemon has unreaped children: %v", z)
	}
	// The container itself is untouched by the killed exec.
	st, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after exec timeout: %v %v", st, err)
	}

	if _, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("exec in an exited container: %v, want FailedPrecondition", err)
	}
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove pod: %v\n%s", err, d.output.String())
	}
}

// processesWithCmdline lists the host processes whose command line is exactly cmdline.
func processesWithCmdline(cmdline string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []string{"read /proc: " + err.Error()}
	}
	var pids []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && string(b) == cmdline {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// zombieChildren lists the children of pid that exited and were not reaped.
func zombieChildren(pid int) []string {
	var zombies []string
	for _, child := range childPids(pid) {
		if processState(child) == 'Z' {
			zombies = append(zombies, strconv.Itoa(child))
		}
	}
	return zombies
}

// childPids are the children of pid, of all its threads.
func childPids(pid int) []int {
	task := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tids, _ := os.ReadDir(task)
	var out []int
	for _, tid := range tids {
		b, err := os.ReadFile(filepath.Join(task, tid.Name(), "children"))
		if err != nil {
			continue // the thread ended
		}
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// processState is the state letter of pid in /proc/PID/stat, 0 when it is gone.
func processState(pid int) byte {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if i := bytes.LastIndexByte(stat, ')'); err == nil && i >= 0 && i+2 < len(stat) {
		return stat[i+2]
	}
	return 0
}

// processRuns reports whether pid exists and is not a zombie waiting to be reaped.
func processRuns(pid int) bool {
	s := processState(pid)
	return s != 0 && s != 'Z' && s != 'X'
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
