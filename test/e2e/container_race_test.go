package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/cni/cnitest"
)

// TestCreateContainerVersusRemovePod races CreateContainer against RemovePodSandbox of the
// same pod: whatever wins, no container of the removed pod may be left (listed, mounted or
// on disk).
func TestCreateContainerVersusRemovePod(t *testing.T) {
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
	for i := 0; i < 5; i++ {
		podCfg := nsPod(fmt.Sprintf("race-%d", i), &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD})
		pr, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			t.Fatalf("run pod: %v\n%s", err, d.output.String())
		}
		podID := pr.PodSandboxId
		var wg sync.WaitGroup
		wg.Add(2)
		created := 0
		go func() {
			defer wg.Done()
			// Bounded: creates stop at the first refusal (the pod is going or gone).
			for j := 0; j < 50; j++ {
				_, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
					Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", j)},
					Image:    &runtimeapi.ImageSpec{Image: "busybox"},
					Command:  []string{"sleep", "3600"},
				}})
				if err != nil {
					return
				}
				created++
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Errorf("remove pod: %v", err)
			}
		}()
		wg.Wait()
		lr, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			t.Fatal(err)
		}
		if len(lr.Containers) != 0 {
			t.Errorf("round %d: %d containers left in the removed pod (%d created)", i, len(lr.Containers), created)
		}
		t.Logf("round %d: %d containers created before the pod went", i, created)
		assertNothingLeft(t, dirs, podID)
	}
}
