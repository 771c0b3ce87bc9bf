package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeletBinary is $KUBELET_BIN, or the one hack/build-kubelet.sh builds.
func kubeletBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("KUBELET_BIN"); bin != "" {
		return bin
	}
	return outputBin(t, "kubelet", "hack/build-kubelet.sh")
}

// kubeletNode is a standalone kubelet (no API server: static pods from a directory) driving
// the daemon under test, as on a node.
type kubeletNode struct {
	t         *testing.T
	name      string
	manifests string
	port      int
	http      *http.Client
	log       string
	stop      func() // stops kubelet, once
}

// kubeletPod is the part of the kubelet's /pods answer (a v1 PodList) the tests read.
type kubeletPod struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		Phase             string `json:"phase"`
		PodIP             string `json:"podIP"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			Ready        bool   `json:"ready"`
			RestartCount int    `json:"restartCount"`
			ContainerID  string `json:"containerID"`
			LastState    struct {
				Terminated *struct {
					ExitCode int    `json:"exitCode"`
					Reason   string `json:"reason"`
				} `json:"terminated"`
			} `json:"lastState"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// TestKubelet runs a real kubelet (standalone, static pods) on the daemon: a pod with an
// exec readiness probe and a volume, a container that keeps crashing, kubelet's log and
// stats endpoints, a daemon SIGKILL under kubelet, and the removal of a pod by kubelet.
func TestKubelet(t *testing.T) {
	bin := kubeletBinary(t)
	if hostNetwork() {
		t.Skip("kubelet's pods here use the CNI network")
	}
	dirs := newDaemonDirs(t)
	certs := busyboxMirror(t, dirs.base)
	netLines, _ := podNetwork(t, dirs)
	cfgPath := dirs.writeConfig(t, netLines+"[registry]\nconfig_path = \""+certs+"\"\n")
	d := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	cgroupRoot := kubeletCgroupRoot(t)            // removed once the pods are gone
	restoreKubeletHostChanges(t, kubeletNodeName) // once kubelet has stopped
	k := startKubelet(t, bin, dirs, cgroupRoot)
	// kubelet leaves its pods running when it exits, as it should: they are removed after it
	// stops, then the daemon that replaced the first one (below) stops.
	var relaunched *daemon
	t.Cleanup(func() {
		k.stop()
		removeAllPods(t, c)
		if relaunched != nil {
			_ = relaunched.stop(t)
		}
	})

	k.writeManifest("talker", `
    command: ["sh", "-c", "touch /tmp/ready; echo hello > /scratch/hello; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
    volumeMounts:
    - name: scratch
      mountPath: /scratch
  volumes:
  - name: scratch
    emptyDir: {}`)
	k.writeManifest("crasher", `
    command: ["sh", "-c", "echo crashing; sleep 1; exit 3"]`)
	// hostUsers: false, a pod in a user namespace of its own: its root is no one on the host,
	// yet owns its image's files and its volume's (idmapped mounts).
	k.writeManifest("userns", `
    command: ["sh", "-c", "cat /proc/self/uid_map; echo uid $(id -u); touch /scratch/mine /made-in-rootfs && ls -ln /scratch/mine /bin/busybox; sleep 3600"]
    volumeMounts:
    - name: scratch
      mountPath: /scratch
  hostUsers: false
  volumes:
  - name: scratch
    emptyDir: {}`)

	talker := k.waitPod("talker", 90*time.Second, func(p kubeletPod) bool {
		return p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
	})
	if !strings.HasPrefix(talker.Status.PodIP, "10.234.") { // every e2e subnet is 10.234.N.0/24
		t.Errorf("talker's pod IP %q is not on the test network 10.234.N.0/24", talker.Status.PodIP)
	}
	talkerID := talker.Status.ContainerStatuses[0].ContainerID
	if !strings.HasPrefix(talkerID, "cri-mini://") {
		t.Errorf("kubelet names the container %q, want the cri-mini:// runtime prefix", talkerID)
	}
	if logs := k.get("/containerLogs/default/talker-" + k.name + "/talker?tailLines=3"); !strings.Contains(logs, "line ") {
		t.Errorf("kubelet's containerLogs of talker: %q, want numbered lines", logs)
	}

	crasher := k.waitPod("crasher", 90*time.Second, func(p kubeletPod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1 &&
			p.Status.ContainerStatuses[0].LastState.Terminated != nil
	})
	if term := crasher.Status.ContainerStatuses[0].LastState.Terminated; term.ExitCode != 3 || term.Reason != "Error" {
		t.Errorf("crasher's last termination: exit code %d reason %q, want 3 and Error", term.ExitCode, term.Reason)
	}

	k.checkSummary("talker")
	k.checkExec("talker")
	k.checkUserns("userns")

	// The daemon dies under kubelet and comes back: the container neither restarts nor
	// changes, and kubelet keeps reading its logs.
	before := lastLineNumber(t, k.get("/containerLogs/default/talker-"+k.name+"/talker?tailLines=1"))
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.done <- <-d.done
	relaunched = launchDaemon(t, dirs.socket, "--config", cfgPath)
	st, err := c.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: strings.TrimPrefix(talkerID, "cri-mini://")})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("talker after the daemon restart: %v %v", st.GetStatus().GetState(), err)
	}
	time.Sleep(3 * time.Second) // several of kubelet's relists against the new daemon
	talker = k.waitPod("talker", 60*time.Second, func(p kubeletPod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
	})
	if st := talker.Status.ContainerStatuses[0]; st.ContainerID != talkerID || st.RestartCount != 0 {
		t.Errorf("after the daemon restart talker is %s with %d restarts, want %s with none", st.ContainerID, st.RestartCount, talkerID)
	}
	if after := lastLineNumber(t, k.get("/containerLogs/default/talker-"+k.name+"/talker?tailLines=1")); after <= before {
		t.Errorf("kubelet's containerLogs of talker end at line %d after the daemon restart, %d before", after, before)
	}
	// The restarted daemon finds the pod's user namespace again: an exec still runs in it.
	k.checkUserns("userns")

	// A removed manifest: kubelet stops and removes the pod through the runtime.
	k.removeManifest("talker")
	deadline := time.Now().Add(90 * time.Second)
	for {
		pods, err := c.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range pods.Items {
			found = found || p.Metadata.Name == "talker-"+k.name
		}
		if !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubelet did not remove talker's sandbox within 90s\n%s", k.tail())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if t.Failed() {
		t.Logf("kubelet's log:\n%s\ndaemon's log:\n%s", k.tail(), relaunched.output.String())
	}
}

// checkUserns checks the pod with hostUsers: false: kubelet gave it a range of host IDs of
// its own, its root is root inside, owns the image's files and what it writes to its
// volume, and kubelet's exec runs in its user namespace too.
func (k *kubeletNode) checkUserns(pod string) {
	k.t.Helper()
	k.waitPod(pod, 90*time.Second, func(p kubeletPod) bool {
		return p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
	})
	var logs string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		logs = k.get("/containerLogs/default/" + pod + "-" + k.name + "/" + pod)
		if strings.Contains(logs, "busybox") || time.Now().After(deadline) {
			break
		}
	}
	f := strings.Fields(logs)
	if len(f) < 3 || f[0] != "0" || f[1] == "0" || f[2] != "65536" {
		k.t.Errorf("uid_map of the hostUsers: false pod: %q, want container root on a range of 65536 host IDs other than the host's root", logs)
	}
	if !strings.Contains(logs, "uid 0\n") {
		k.t.Errorf("hostUsers: false pod does not run as root inside:\n%s", logs)
	}
	owned := 0
	for _, line := range strings.Split(logs, "\n") {
		// ls -ln: mode, links, uid, gid, ...: the volume's new file and the image's binary
		// are the pod's root's (idmapped volume and layers), not nobody's.
		if l := strings.Fields(line); len(l) > 4 && (strings.HasSuffix(line, "/scratch/mine") || strings.HasSuffix(line, "/bin/busybox")) {
			if l[2] != "0" || l[3] != "0" {
				k.t.Errorf("in the hostUsers: false pod, %s is owned by %s:%s, want 0:0", l[len(l)-1], l[2], l[3])
			}
			owned++
		}
	}
	if owned != 2 {
		k.t.Errorf("hostUsers: false pod's output lacks its ls -ln lines:\n%s", logs)
	}
	stdout, _, _, err := wsExec(k.port, "/exec/default/"+pod+"-"+k.name+"/"+pod+"?command=cat&command=/proc/self/uid_map&output=1&error=1")
	if err != nil || strings.Join(strings.Fields(stdout), " ") != strings.Join(f[:3], " ") {
		k.t.Errorf("exec into the hostUsers: false pod: uid_map %q, %v; want %q", stdout, err, strings.Join(f[:3], " "))
	}
}

// startKubelet starts a standalone kubelet on the daemon's socket, its state, logs and
// cgroups in places of its own, and stops it when the test ends.
func startKubelet(t *testing.T, bin string, dirs daemonDirs, cgroupRoot string) *kubeletNode {
	t.Helper()
	base := filepath.Join(dirs.base, "kubelet")
	k := &kubeletNode{
		t: t, name: kubeletNodeName, manifests: filepath.Join(base, "manifests"), port: freePort(t),
		log: filepath.Join(base, "kubelet.log"),
		// The kubelet serves with a self-signed certificate it makes at start-up.
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	}
	for _, dir := range []string{k.manifests, filepath.Join(base, "root"), filepath.Join(base, "pods")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%[1]s
imageServiceEndpoint: unix://%[1]s
staticPodPath: %[2]s
fileCheckFrequency: 1s
syncFrequency: 2s
podLogsDir: %[3]s
cgroupDriver: cgroupfs
cgroupRoot: %[4]s
failSwapOn: false
makeIPTablesUtilChains: false
address: 127.0.0.1
port: %[5]d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
`, dirs.socket, k.manifests, filepath.Join(base, "pods"), cgroupRoot, k.port)
	cfgPath := filepath.Join(base, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(k.log)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "root")
	cmd := exec.Command(bin, "--config", cfgPath, "--root-dir", root, "--cert-dir", filepath.Join(base, "pki"),
		"--hostname-override", k.name, "-v=2")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	k.stop = sync.OnceFunc(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		// kubelet makes its root dir a shared bind mount of itself and leaves it.
		_ = syscall.Unmount(root, syscall.MNT_DETACH)
	})
	t.Cleanup(k.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := k.pods(); err == nil {
			return k
		}
		select {
		case <-done:
			t.Fatalf("kubelet exited at start-up:\n%s", k.tail())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubelet did not serve on 127.0.0.1:%d within 60s:\n%s", k.port, k.tail())
		}
	}
}

// kubeletCgroupRoot makes a cgroup of the test's own in every hierarchy, for kubelet's QoS and
// pod cgroups to live under, and removes the tree kubelet leaves in it when the test ends.
func kubeletCgroupRoot(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("crm-e2e-kubelet-%d", os.Getpid())
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer mounts.Close()
	var made []string
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		// mountinfo: ... mount point is field 5; the file system type follows " - ".
		fields := strings.Fields(sc.Text())
		_, after, ok := strings.Cut(sc.Text(), " - ")
		if !ok || len(fields) < 5 || (!strings.HasPrefix(after, "cgroup ") && !strings.HasPrefix(after, "cgroup2 ")) {
			continue
		}
		dir := filepath.Join(fields[4], name)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			t.Fatalf("make kubelet's cgroup root: %v", err)
		}
		made = append(made, dir)
	}
	t.Cleanup(func() {
		for _, dir := range made {
			removeCgroupTree(t, dir)
		}
	})
	return "/" + name
}

// removeCgroupTree removes dir and the cgroups under it, deepest first. Processes still in
// them (a test that failed before its pods were removed) are killed first.
func removeCgroupTree(t *testing.T, dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for try := 0; try < 50; try++ {
			procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
			for _, f := range strings.Fields(string(procs)) {
				if pid, perr := strconv.Atoi(f); perr == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if err = syscall.Rmdir(dirs[i]); err == nil || err == syscall.ENOENT || err != syscall.EBUSY {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && err != syscall.ENOENT {
			t.Errorf("remove cgroup %s: %v", dirs[i], err)
		}
	}
}

// kubeletTunables are the kernel settings kubelet sets at start-up unless
// protectKernelDefaults (which makes it refuse to start on a machine that differs):
// pkg/kubelet/cm setupKernelTunables.
var kubeletTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// kubeletStateDir is where kubelet puts its device plugin socket, whatever its root dir.
const kubeletStateDir = "/var/lib/kubelet"

// kubeletNodeName is the node kubelet runs as: its static pods are named <pod>-<node>.
const kubeletNodeName = "crm-e2e-node"

// restoreKubeletHostChanges puts back, when the test ends, what kubelet running as node
// changes on the host outside the directories it is given: its kernel settings, its device
// plugin socket, and the links to its containers' logs (those of the pods still there when
// it stopped are left).
func restoreKubeletHostChanges(t *testing.T, node string) {
	t.Helper()
	saved := map[string][]byte{}
	for _, k := range kubeletTunables {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		saved[k] = v
	}
	_, err := os.Stat(kubeletStateDir)
	hadStateDir := err == nil
	_, err = os.Stat(kubeletLinkDir)
	hadLinkDir := err == nil
	t.Cleanup(func() {
		for k, v := range saved {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), v, 0o644); err != nil {
				t.Errorf("restore %s: %v", k, err)
			}
		}
		if hadStateDir {
			_ = os.Remove(filepath.Join(kubeletStateDir, "device-plugins", "kubelet.sock"))
		} else {
			_ = os.RemoveAll(kubeletStateDir)
		}
		links, _ := filepath.Glob(filepath.Join(kubeletLinkDir, "*-"+node+"_*.log"))
		for _, l := range links {
			if err := os.Remove(l); err != nil {
				t.Errorf("remove kubelet's log link: %v", err)
			}
		}
		if !hadLinkDir {
			_ = os.Remove(kubeletLinkDir) // only if empty: another user's links stay
		}
	})
}

// writeManifest makes a static pod of one busybox container; spec is the YAML that follows
// the container's image lines (its command, probes, mounts) and may add pod-level keys.
func (k *kubeletNode) writeManifest(name, spec string) {
	k.t.Helper()
	manifest := `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: ` + name + `
    image: busybox
    imagePullPolicy: IfNotPresent` + spec + "\n"
	// Written aside and renamed in: kubelet must never read half a manifest.
	tmp := filepath.Join(filepath.Dir(k.manifests), name+".yaml")
	if err := os.WriteFile(tmp, []byte(manifest), 0o644); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.manifests, name+".yaml")); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kubeletNode) removeManifest(name string) {
	k.t.Helper()
	if err := os.Remove(filepath.Join(k.manifests, name+".yaml")); err != nil {
		k.t.Fatal(err)
	}
}

// get fetches a path of kubelet's server.
func (k *kubeletNode) get(path string) string {
	k.t.Helper()
	body, err := k.fetch(path)
	if err != nil {
		k.t.Fatalf("kubelet GET %s: %v\n%s", path, err, k.tail())
	}
	return body
}

func (k *kubeletNode) fetch(path string) (string, error) {
	resp, err := k.http.Get("https://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(k.port)) + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, body)
	}
	return string(body), nil
}

func (k *kubeletNode) pods() ([]kubeletPod, error) {
	body, err := k.fetch("/pods")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []kubeletPod `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, fmt.Errorf("decode kubelet's /pods: %w", err)
	}
	return list.Items, nil
}

// waitPod waits (bounded) until kubelet reports the static pod name in a state ok accepts.
func (k *kubeletNode) waitPod(name string, timeout time.Duration, ok func(kubeletPod) bool) kubeletPod {
	k.t.Helper()
	full := name + "-" + k.name
	deadline := time.Now().Add(timeout)
	var last kubeletPod
	for {
		pods, err := k.pods()
		if err != nil {
			k.t.Fatalf("kubelet's /pods: %v\n%s", err, k.tail())
		}
		for _, p := range pods {
			if p.Metadata.Name == full {
				if ok(p) {
					return p
				}
				last = p
			}
		}
		if time.Now().After(deadline) {
			st, _ := json.Marshal(last.Status)
			k.t.Fatalf("pod %s not as wanted within %s; last status %s\n%s", full, timeout, st, k.tail())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkSummary reads kubelet's /stats/summary (fed by the CRI stats RPCs): the running
// container of pod has memory and writable-layer figures.
func (k *kubeletNode) checkSummary(pod string) {
	t := k.t
	t.Helper()
	type summaryPods struct {
		Pods []struct {
			PodRef struct {
				Name string `json:"name"`
			} `json:"podRef"`
			Containers []struct {
				Name   string `json:"name"`
				Memory *struct {
					WorkingSetBytes *uint64 `json:"workingSetBytes"`
				} `json:"memory"`
				Rootfs *struct {
					UsedBytes *uint64 `json:"usedBytes"`
				} `json:"rootfs"`
			} `json:"containers"`
		} `json:"pods"`
	}
	// The first figures come from the stats collectors' first pass: wait for them, bounded.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var summary summaryPods // fresh each time: Unmarshal would keep an earlier answer's fields
		if err := json.Unmarshal([]byte(k.get("/stats/summary")), &summary); err != nil {
			t.Fatalf("decode kubelet's /stats/summary: %v", err)
		}
		for _, p := range summary.Pods {
			if p.PodRef.Name != pod+"-"+k.name {
				continue
			}
			for _, ctr := range p.Containers {
				if ctr.Name == pod && ctr.Memory != nil && ctr.Memory.WorkingSetBytes != nil && *ctr.Memory.WorkingSetBytes > 0 &&
					ctr.Rootfs != nil && ctr.Rootfs.UsedBytes != nil {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("kubelet's /stats/summary has no memory and rootfs figures for %s within 60s", pod)
			return
		}
		time.Sleep(time.Second)
	}
}

// checkExec runs a command in pod's container through kubelet's exec endpoint, the way
// kubectl exec does: a WebSocket (remotecommand v5.channel.k8s.io) that kubelet proxies to
// the runtime's streaming server. Its output and its exit code must come back.
func (k *kubeletNode) checkExec(pod string) {
	t := k.t
	t.Helper()
	path := "/exec/default/" + pod + "-" + k.name + "/" + pod +
		"?command=sh&command=-c&command=" + url.QueryEscape("echo out-$((6*7)); echo err >&2; exit 3") + "&output=1&error=1"
	stdout, stderr, status, err := wsExec(k.port, path)
	if err != nil {
		t.Fatalf("exec through kubelet: %v\n%s", err, k.tail())
	}
	if strings.TrimSpace(stdout) != "out-42" || strings.TrimSpace(stderr) != "err" {
		t.Errorf("exec through kubelet: stdout %q stderr %q, want out-42 and err", stdout, stderr)
	}
	// The status is a metav1.Status: a non-zero exit is NonZeroExitCode with the code.
	if !strings.Contains(status, `"NonZeroExitCode"`) || !strings.Contains(status, `"message":"3"`) {
		t.Errorf("exec through kubelet: status %s, want NonZeroExitCode with exit code 3", status)
	}
}

// wsExec speaks just enough WebSocket (RFC 6455) to run a command without stdin through
// kubelet's TLS server: the upgrade, then the server's frames until it closes. In
// v5.channel.k8s.io each binary message starts with its channel: 1 stdout, 2 stderr, 3 the
// final status.
func wsExec(port int, path string) (stdout, stderr, status string, err error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp",
		net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return "", "", "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return "", "", "", err
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: Y3JpLW1pbmkgZTJlIGtleQ==\r\n" +
		"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return "", "", "", err
	}
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		return "", "", "", err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", "", "", fmt.Errorf("upgrade refused: %s: %s", resp.Status, body)
	}
	var out, errOut, st strings.Builder
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(rd, hdr[:]); err != nil {
			return out.String(), errOut.String(), st.String(), fmt.Errorf("read frame: %w", err)
		}
		opcode, n := hdr[0]&0x0f, uint64(hdr[1]&0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(rd, ext[:]); err != nil {
				return "", "", "", err
			}
			n = uint64(ext[0])<<8 | uint64(ext[1])
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(rd, ext[:]); err != nil {
				return "", "", "", err
			}
			n = 0
			for _, b := range ext {
				n = n<<8 | uint64(b)
			}
		}
		if n > 1<<20 {
			return "", "", "", fmt.Errorf("frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(rd, payload); err != nil {
			return "", "", "", fmt.Errorf("read frame: %w", err)
		}
		switch {
		case opcode == 0x8: // close
			return out.String(), errOut.String(), st.String(), nil
		case opcode != 0x2 || len(payload) == 0: // text, ping, empty: nothing of the command's
		case payload[0] == 1:
			out.Write(payload[1:])
		case payload[0] == 2:
			errOut.Write(payload[1:])
		case payload[0] == 3:
			st.Write(payload[1:])
		}
	}
}

// tail is the end of kubelet's log, for failure messages.
func (k *kubeletNode) tail() string {
	data, _ := os.ReadFile(k.log)
	const max = 8 << 10
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return "kubelet log (end):\n" + string(data)
}

// kubeletLinkDir is where kubelet links each container's log, whatever its configuration.
const kubeletLinkDir = "/var/log/containers"

// lastLineNumber is N of the last "line N" in logs.
func lastLineNumber(t *testing.T, logs string) int {
	t.Helper()
	i := strings.LastIndex(logs, "line ")
	if i < 0 {
		t.Fatalf("no numbered line in %q", logs)
	}
	n, err := strconv.Atoi(strings.Fields(logs[i+len("line "):])[0])
	if err != nil {
		t.Fatalf("no number after the last \"line \" in %q", logs)
	}
	return n
}

// removeAllPods removes every pod sandbox the daemon knows, with their containers.
func removeAllPods(t *testing.T, c runtimeapi.RuntimeServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("list pods to remove: %v", err)
		return
	}
	for _, p := range pods.Items {
		if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("remove pod %s: %v", p.Id, err)
		}
	}
}
