package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
)

// resourcesDaemon starts a daemon with busybox pulled and one pod; it returns the client,
// the pod's ID and config and the daemon (for its output).
func resourcesDaemon(t *testing.T, name string) (runtimeapi.RuntimeServiceClient, string, *runtimeapi.PodSandboxConfig, *daemon) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a daemon that creates namespaces, mounts and cgroups")
	}
	dirs := newDaemonDirs(t)
	certs := busyboxMirror(t, dirs.base)
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "e2e-" + name}}
	extra, adapt := podNetwork(t, dirs)
	adapt(podCfg)
	cfgPath := dirs.writeConfig(t, extra+"[registry]\nconfig_path = \""+certs+"\"\n")
	ctx := context.Background()
	d := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	if _, err := imageClient(t, dirs.socket).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, d.output.String())
	}
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, d.output.String())
	}
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pr.PodSandboxId})
	})
	return c, pr.PodSandboxId, podCfg, d
}

// startBusybox creates and starts a busybox container running cmd with the resources.
func startBusybox(t *testing.T, c runtimeapi.RuntimeServiceClient, d *daemon, podID string, podCfg *runtimeapi.PodSandboxConfig, name string, cmd []string, res *runtimeapi.LinuxContainerResources) string {
	t.Helper()
	ctx := context.Background()
	cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  cmd,
		Labels:   map[string]string{"test": name},
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: res, SecurityContext: ownPIDNamespace(nil)},
	}})
	if err != nil {
		t.Fatalf("create container %s: %v\n%s", name, err, d.output.String())
	}
	if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("start container %s: %v\n%s", name, err, d.output.String())
	}
	return cr.ContainerId
}

// cgroupsPath is the container's cgroup (cgroupfs path), from its verbose status.
func cgroupsPath(t *testing.T, c runtimeapi.RuntimeServiceClient, id string) string {
	t.Helper()
	st, err := c.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		RuntimeSpec struct {
			Linux struct {
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.RuntimeSpec.Linux.CgroupsPath == "" {
		t.Fatalf("cgroups path of %s: %v (%s)", id, err, st.Info["info"])
	}
	return info.RuntimeSpec.Linux.CgroupsPath
}

// readCgroupFile reads a file of a cgroup on the host.
func readCgroupFile(t *testing.T, p, controller, file string) string {
	t.Helper()
	m := cgroups.New()
	dirs, err := m.Dirs(p)
	if err != nil {
		t.Fatal(err)
	}
	dir, ok := dirs[controller]
	if m.IsV2() || !ok {
		dir = dirs[""]
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	return strings.TrimSpace(string(b))
}

// cgroupFile reads a file of the container's cgroup on the host.
func cgroupFile(t *testing.T, c runtimeapi.RuntimeServiceClient, id, controller, file string) string {
	t.Helper()
	return readCgroupFile(t, cgroupsPath(t, c, id), controller, file)
}

// TestContainerResources checks that the limits asked for are the ones in the container's
// cgroup, that an update reaches the running container's cgroup and its status, that bad
// values are refused naming the field, and that a busy container's stats show usage.
func TestContainerResources(t *testing.T) {
	c, podID, podCfg, d := resourcesDaemon(t, "resources-pod")
	ctx := context.Background()
	v2 := cgroups.New().IsV2()
	memFile, quotaFile := "memory.limit_in_bytes", "cpu.cfs_quota_us"
	if v2 {
		memFile, quotaFile = "memory.max", "cpu.max"
	}
	quota := func(q int64) string {
		if v2 {
			return itoa(q) + " 100000"
		}
		return itoa(q)
	}

	checkRefusedResources(t, c, podID, podCfg, v2)

	id := startBusybox(t, c, d, podID, podCfg, "busy", []string{"sh", "-c", "while :; do :; done"},
		&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512, OomScoreAdj: 500})
	if got := cgroupFile(t, c, id, "memory", memFile); got != itoa(64<<20) {
		t.Errorf("%s = %s, want %d", memFile, got, 64<<20)
	}
	if got := cgroupFile(t, c, id, "cpu", quotaFile); got != quota(50000) {
		t.Errorf("%s = %s, want %s", quotaFile, got, quota(50000))
	}
	r, err := c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/proc/1/oom_score_adj"}})
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "500" {
		t.Errorf("oom_score_adj in the container: %v %q", err, r.GetStdout())
	}

	checkNoHostDevices(t, c, id, v2)

	if _, err := c.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuQuota: 20000}}); err != nil {
		t.Fatalf("update: %v\n%s", err, d.output.String())
	}
	if got := cgroupFile(t, c, id, "memory", memFile); got != itoa(96<<20) {
		t.Errorf("after update %s = %s, want %d", memFile, got, 96<<20)
	}
	if got := cgroupFile(t, c, id, "cpu", quotaFile); got != quota(20000) {
		t.Errorf("after update %s = %s, want %s", quotaFile, got, quota(20000))
	}
	st, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if lr := st.GetStatus().GetResources().GetLinux(); err != nil || lr.GetMemoryLimitInBytes() != 96<<20 || lr.GetCpuQuota() != 20000 || lr.GetCpuShares() != 512 || lr.GetOomScoreAdj() != 500 {
		t.Errorf("status resources after update: %v %v", lr, err)
	}
	if _, err := c.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "nosuchcontainer",
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}}); status.Code(err) != codes.NotFound {
		t.Errorf("update of an unknown container: %v, want NotFound", err)
	}

	// The pod-level update still reaches the pod cgroup, the container's parent.
	if _, err := c.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: podID,
		Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}}); err != nil {
		t.Fatalf("update pod resources: %v", err)
	}
	if got := readCgroupFile(t, path.Dir(cgroupsPath(t, c, id)), "memory", memFile); got != itoa(256<<20) {
		t.Errorf("pod %s = %s, want %d", memFile, got, 256<<20)
	}

	checkBusyStats(t, c, podID, id)
}

// checkRefusedResources: bad values are refused with InvalidArgument naming the field, and
// leave no container behind.
func checkRefusedResources(t *testing.T, c runtimeapi.RuntimeServiceClient, podID string, podCfg *runtimeapi.PodSandboxConfig, v2 bool) {
	t.Helper()
	ctx := context.Background()
	bad := []struct {
		name  string
		res   *runtimeapi.LinuxContainerResources
		field string
	}{
		{"negative memory", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, "memory_limit_in_bytes"},
		{"oom score", &runtimeapi.LinuxContainerResources{OomScoreAdj: 5000}, "oom_score_adj"},
		{"swap below memory", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 1 << 20}, "memory_swap_limit_in_bytes"},
		{"hugepage size", &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "3MB", Limit: 1}}}, "hugepage_limits"},
	}
	if !v2 {
		bad = append(bad, struct {
			name  string
			res   *runtimeapi.LinuxContainerResources
			field string
		}{"unified on v1", &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1M"}}, "unified"})
	}
	for _, tc := range bad {
		_, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "bad"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
			Command: []string{"true"}, Linux: &runtimeapi.LinuxContainerConfig{Resources: tc.res},
		}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
	if l, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil || len(l.Containers) != 0 {
		t.Fatalf("refused creates left containers: %v %v", l, err)
	}
}

// checkNoHostDevices: the container cannot create and read a host device outside the
// default set (a disk of the host when it has one, else /dev/kmsg), whatever its
// capabilities; on v1 its devices.list is an allow-list, not "a *:* rwm".
func checkNoHostDevices(t *testing.T, c runtimeapi.RuntimeServiceClient, id string, v2 bool) {
	t.Helper()
	dev := "c 1 11"
	if matches, _ := filepath.Glob("/sys/block/*/dev"); len(matches) > 0 {
		if b, err := os.ReadFile(matches[0]); err == nil {
			dev = "b " + strings.Replace(strings.TrimSpace(string(b)), ":", " ", 1)
		}
	}
	r, err := c.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id,
		Cmd: []string{"sh", "-c", "mknod /tmp/hostdev " + dev + " 2>/dev/null; head -c 1 /tmp/hostdev >/dev/null"}})
	if err != nil || r.ExitCode == 0 {
		t.Errorf("mknod and read of host device %q in the container: %v, exit %d", dev, err, r.GetExitCode())
	}
	if r, err := c.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id,
		Cmd: []string{"sh", "-c", "head -c 1 /dev/zero >/dev/null && echo x >/dev/null"}}); err != nil || r.ExitCode != 0 {
		t.Errorf("default devices in the container: %v, exit %d %s", err, r.GetExitCode(), r.GetStderr())
	}
	if !v2 {
		if list := cgroupFile(t, c, id, "devices", "devices.list"); strings.Contains(list, "a *:* rwm") {
			t.Errorf("devices.list allows everything:\n%s", list)
		}
	}
}

// checkBusyStats waits (bounded) until the busy container's stats show CPU and memory use
// and the list and pod stats RPCs find it.
func checkBusyStats(t *testing.T, c runtimeapi.RuntimeServiceClient, podID, id string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		st := s.Stats
		if st.GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 && st.GetCpu().GetUsageNanoCores().GetValue() > 0 &&
			st.GetMemory().GetWorkingSetBytes().GetValue() > 0 && st.GetWritableLayer() != nil {
			if st.GetMemory().GetAvailableBytes().GetValue() == 0 || st.GetWritableLayer().GetFsId().GetMountpoint() == "" {
				t.Errorf("stats without available bytes or layer mountpoint: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats of a busy container after 10s: %v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, f := range []*runtimeapi.ContainerStatsFilter{nil, {Id: id[:12]}, {PodSandboxId: podID}, {LabelSelector: map[string]string{"test": "busy"}}} {
		l, err := c.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: f})
		if err != nil || len(l.Stats) != 1 || l.Stats[0].Attributes.Id != id {
			t.Errorf("list stats with filter %v: %v %v", f, l, err)
		}
	}
	if l, err := c.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"test": "other"}}}); err != nil || len(l.Stats) != 0 {
		t.Errorf("list stats with a label nobody has: %v %v", l, err)
	}
	ps, err := c.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	lx := ps.Stats.GetLinux()
	if lx.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || len(lx.GetContainers()) != 1 || (!hostNetwork() && lx.GetNetwork().GetDefaultInterface().GetName() == "") {
		t.Errorf("pod stats: %v", ps.Stats)
	}
	if l, err := c.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}); err != nil || len(l.Stats) != 1 {
		t.Errorf("list pod stats: %v %v", l, err)
	}
}

// TestContainerOOMKilled runs a container with a 16 MiB limit that allocates 64 MiB: it
// is reported exited with 137 and OOMKilled. A second container in the same pod that ends
// normally is not.
func TestContainerOOMKilled(t *testing.T) {
	c, podID, podCfg, d := resourcesDaemon(t, "oom-pod")
	res := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20, MemorySwapLimitInBytes: 16 << 20}
	// busybox dd fills its whole 64 MiB buffer from /dev/zero.
	id := startBusybox(t, c, d, podID, podCfg, "oom", []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"}, res)
	st := waitExited(t, c, id)
	if st.Status.ExitCode != 137 || st.Status.Reason != "OOMKilled" {
		t.Errorf("OOM container: exit %d reason %q, want 137 OOMKilled", st.Status.ExitCode, st.Status.Reason)
	}
	ok := startBusybox(t, c, d, podID, podCfg, "fine", []string{"true"}, res)
	st = waitExited(t, c, ok)
	if st.Status.ExitCode != 0 || st.Status.Reason != "Completed" {
		t.Errorf("normal container: exit %d reason %q, want 0 Completed", st.Status.ExitCode, st.Status.Reason)
	}
}

// hostNetwork reports whether the tests run their pods on the node's network (set by
// hack/cgroupv2-vm.sh, whose guest has no CNI plugins).
func hostNetwork() bool { return os.Getenv("CRI_MINI_E2E_HOST_NETWORK") != "" }

// podNetwork prepares the network of a test's pods: a test bridge through CNI, or the
// node's network under hostNetwork(). It returns the daemon config lines it needs and a
// function that adapts each pod config.
func podNetwork(t *testing.T, dirs daemonDirs) (string, func(*runtimeapi.PodSandboxConfig)) {
	t.Helper()
	if hostNetwork() {
		return "", func(cfg *runtimeapi.PodSandboxConfig) {
			if cfg.Linux == nil {
				cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{}
			}
			if cfg.Linux.SecurityContext == nil {
				cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{}
			}
			if cfg.Linux.SecurityContext.NamespaceOptions == nil {
				cfg.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{}
			}
			cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		}
	}
	cnitest.NeedRoot(t)
	cniBin := cnitest.BinDir(t)
	newE2ENet(t, dirs)
	return "bin_dirs = [\"" + cniBin + "\"]\n", func(*runtimeapi.PodSandboxConfig) {}
}

// ownPIDNamespace gives the container a PID namespace of its own, as kubelet does unless the
// pod shares one: its process is PID 1, which the tests read /proc/1 of. The CRI's zero value
// (POD) would make the pod's init PID 1.
func ownPIDNamespace(sc *runtimeapi.LinuxContainerSecurityContext) *runtimeapi.LinuxContainerSecurityContext {
	if sc == nil {
		sc = &runtimeapi.LinuxContainerSecurityContext{}
	}
	if sc.NamespaceOptions == nil {
		sc.NamespaceOptions = &runtimeapi.NamespaceOption{}
	}
	sc.NamespaceOptions.Pid = runtimeapi.NamespaceMode_CONTAINER
	return sc
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
