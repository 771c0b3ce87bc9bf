package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerSeccomp: a RuntimeDefault container (and what is exec'd into it) cannot
// unshare or mount; an Unconfined one, root with SYS_ADMIN, can unshare; a Localhost
// profile that does not exist fails the create with InvalidArgument.
func TestContainerSeccomp(t *testing.T) {
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
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "seccomp-pod", Namespace: "e2e", Uid: "e2e-seccomp-uid"}}
	adapt(podCfg)
	pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod: %v\n%s", err, d.output.String())
	}
	podID := pr.PodSandboxId
	t.Cleanup(func() {
		_, _ = c.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	create := func(name string, sc *runtimeapi.LinuxContainerSecurityContext) (string, error) {
		cr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  []string{"sleep", "3600"},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: ownPIDNamespace(sc)},
		}})
		if err != nil {
			return "", err
		}
		if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			t.Fatalf("start %s: %v\n%s", name, err, d.output.String())
		}
		return cr.ContainerId, nil
	}
	sysAdmin := &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
	confined, err := create("runtime-default", &runtimeapi.LinuxContainerSecurityContext{
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}})
	if err != nil {
		t.Fatalf("create runtime-default: %v\n%s", err, d.output.String())
	}
	unconfined, err := create("unconfined", &runtimeapi.LinuxContainerSecurityContext{
		Capabilities: sysAdmin,
		Seccomp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}})
	if err != nil {
		t.Fatalf("create unconfined: %v\n%s", err, d.output.String())
	}

	for _, tc := range []struct {
		name    string
		id      string
		cmd     []string
		ok      bool
		outWant string
	}{
		{"default: unshare", confined, []string{"unshare", "-m", "true"}, false, "not permitted"},
		{"default: mount", confined, []string{"mount", "-t", "tmpfs", "none", "/mnt"}, false, "denied"},
		{"default: exec is filtered", confined, []string{"grep", "Seccomp:", "/proc/self/status"}, true, "2"},
		{"default: init is filtered", confined, []string{"grep", "Seccomp:", "/proc/1/status"}, true, "2"},
		{"unconfined: unshare", unconfined, []string{"unshare", "-m", "true"}, true, ""},
		{"unconfined: no filter", unconfined, []string{"grep", "Seccomp:", "/proc/self/status"}, true, "0"},
	} {
		r, err := c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: tc.id, Cmd: tc.cmd})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		out := string(r.Stdout) + string(r.Stderr)
		if (r.ExitCode == 0) != tc.ok || !strings.Contains(out, tc.outWant) {
			t.Errorf("%s: exit %d, output %q; want success=%v with %q", tc.name, r.ExitCode, out, tc.ok, tc.outWant)
		}
	}

	_, err = create("missing-profile", &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
		ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: filepath.Join(t.TempDir(), "none.json")}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "seccomp") {
		t.Errorf("create with a missing localhost profile: %v, want InvalidArgument naming seccomp", err)
	}
	// The failed create left no container behind.
	lr, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Containers) != 2 {
		t.Errorf("%d containers after a failed create, want 2", len(lr.Containers))
	}
	if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove pod: %v\n%s", err, d.output.String())
	}
}
