package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// capHex is the /proc/<pid>/status mask of capability names (without the CAP_ prefix).
func capHex(t *testing.T, names ...string) string {
	t.Helper()
	var m uint64
	for _, n := range names {
		found := false
		for _, c := range capability.ListKnown() {
			if strings.EqualFold(c.String(), n) {
				m |= 1 << uint(c)
				found = true
			}
		}
		if !found {
			t.Fatalf("unknown capability %q", n)
		}
	}
	return fmt.Sprintf("%016x", m)
}

// statusField is a field of a /proc/<pid>/status text ("" when missing).
func statusField(text, key string) string {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestContainerSecurity checks from inside containers, for the container's own process
// (PID 1) and for an exec'd one, that capabilities, no_new_privs, masked paths and the
// read-only rootfs are what the security context asked for.
func TestContainerSecurity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a daemon that creates namespaces, mounts and cgroups")
	}
	dirs := newDaemonDirs(t)
	certs := busyboxMirror(t, dirs.base)
	extra, adapt := podNetwork(t, dirs)
	cfgPath := dirs.writeConfig(t, extra+"[registry]\nconfig_path = \""+certs+"\"\n")
	ctx := context.Background()
	d := startDaemon(t, dirs.socket, "--config", cfgPath)
	c := client(t, dirs.socket)
	if _, err := imageClient(t, dirs.socket).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, d.output.String())
	}
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	// The daemon runs with this test's capabilities: privileged means all of them.
	all := statusField(string(self), "CapPrm")
	defaults := capHex(t, "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
		"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")

	pods := map[bool]string{}
	podCfgs := map[bool]*runtimeapi.PodSandboxConfig{}
	for _, priv := range []bool{false, true} {
		cfg := &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("sec-pod-%v", priv), Namespace: "e2e", Uid: fmt.Sprintf("e2e-sec-%v", priv)},
			Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: priv}},
		}
		adapt(cfg)
		pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatalf("run pod: %v\n%s", err, d.output.String())
		}
		pods[priv], podCfgs[priv] = pr.PodSandboxId, cfg
		t.Cleanup(func() {
			_, _ = c.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pr.PodSandboxId})
			_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pr.PodSandboxId})
		})
	}
	create := func(name string, privPod bool, sc *runtimeapi.LinuxContainerSecurityContext) (string, error) {
		cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pods[privPod], SandboxConfig: podCfgs[privPod], Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  []string{"sleep", "3600"},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: ownPIDNamespace(sc)},
		}})
		if err != nil {
			return "", err
		}
		return cr.ContainerId, nil
	}

	cases := []struct {
		name     string
		privPod  bool
		sc       *runtimeapi.LinuxContainerSecurityContext
		eff, bnd string
		nnp      string
		masked   bool // /proc/timer_list reads empty
		roRootfs bool
	}{
		{name: "defaults", eff: defaults, bnd: defaults, nnp: "0", masked: true},
		{name: "drop ALL add NET_ADMIN, no_new_privs, read-only rootfs",
			sc: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_ADMIN"}},
				NoNewPrivs:   true, ReadonlyRootfs: true,
			},
			eff: capHex(t, "NET_ADMIN"), bnd: capHex(t, "NET_ADMIN"), nnp: "1", masked: true, roRootfs: true},
		{name: "privileged", privPod: true, sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true},
			eff: all, bnd: all, nnp: "0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := create(strings.ReplaceAll(strings.Fields(tc.name)[0], ",", ""), tc.privPod, tc.sc)
			if err != nil {
				t.Fatalf("create container: %v\n%s", err, d.output.String())
			}
			if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("start container: %v\n%s", err, d.output.String())
			}
			exec := func(cmd ...string) (string, string, int32) {
				r, err := c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
				if err != nil {
					t.Fatalf("exec %v: %v", cmd, err)
				}
				return string(r.Stdout), string(r.Stderr), r.ExitCode
			}
			for _, who := range []string{"1", "self"} {
				st, _, _ := exec("cat", "/proc/"+who+"/status")
				for key, want := range map[string]string{"CapEff": tc.eff, "CapPrm": tc.eff, "CapBnd": tc.bnd, "NoNewPrivs": tc.nnp} {
					if got := statusField(st, key); got != want {
						t.Errorf("/proc/%s/status %s = %q, want %q", who, key, got, want)
					}
				}
			}
			if out, _, _ := exec("cat", "/proc/timer_list"); (out == "") != tc.masked {
				t.Errorf("/proc/timer_list read %d bytes, masked: %v", len(out), tc.masked)
			}
			_, stderr, code := exec("touch", "/rootfs-write")
			if ro := code != 0 && strings.Contains(stderr, "Read-only file system"); ro != tc.roRootfs {
				t.Errorf("touch /rootfs-write: exit %d %q, read-only rootfs: %v", code, stderr, tc.roRootfs)
			}
		})
	}

	// Requests the runtime must refuse without creating anything.
	for _, tc := range []struct {
		name  string
		sc    *runtimeapi.LinuxContainerSecurityContext
		field string
	}{
		{"privileged in a plain pod", &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, "privileged"},
		{"unknown capability", &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"FLY"}}},
			"config.linux.security_context.capabilities.add_capabilities[0]"},
	} {
		if _, err := create("refused", false, tc.sc); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", tc.name, err, tc.field)
		}
	}
	lr, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pods[false]}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Containers) != 2 {
		t.Errorf("plain pod has %d containers, want the 2 created (refused requests leave nothing)", len(lr.Containers))
	}
}
