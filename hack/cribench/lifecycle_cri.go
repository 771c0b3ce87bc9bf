package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// lifecycleCRIBench is the crictl loop's twin over one gRPC connection: the same seven
// steps without a crictl process per step, so the runtime's own time shows.
//
// With userns the pods have a user namespace of their own (hostUsers: false), with
// kubelet's shape of mapping.
func (b *bench) lifecycleCRIBench(ctx context.Context, n int, logDir string, userns bool) ([]*samples, error) {
	names := []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}
	loop := &samples{name: "lifecycle loop (CRI client)"}
	steps := make([]*samples, len(names))
	for i, nm := range names {
		steps[i] = &samples{name: "  " + nm}
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("cribench-cri-%d-%d", os.Getpid(), i)
		cfg := benchPod(name, logDir)
		ctrCfg := sleeper()
		if userns {
			withUserns(cfg.Linux.SecurityContext.NamespaceOptions)
			withUserns(ctrCfg.Linux.SecurityContext.NamespaceOptions)
		}
		var pod, ctr string
		ops := []func() error{
			func() error {
				r, err := b.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
				if err == nil {
					pod = r.PodSandboxId
				}
				return err
			},
			func() error {
				r, err := b.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
					PodSandboxId: pod, SandboxConfig: cfg, Config: ctrCfg,
				})
				if err == nil {
					ctr = r.ContainerId
				}
				return err
			},
			func() error {
				_, err := b.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr})
				return err
			},
			func() error {
				_, err := b.runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr})
				return err
			},
			func() error {
				_, err := b.runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr})
				return err
			},
			func() error {
				_, err := b.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
				return err
			},
			func() error {
				_, err := b.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
				return err
			},
		}
		start := time.Now()
		for j, op := range ops {
			if err := timed(steps[j], op); err != nil {
				if pod != "" {
					_, _ = b.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
				}
				return nil, err
			}
		}
		loop.ds = append(loop.ds, time.Since(start))
	}
	return append([]*samples{loop}, steps...), nil
}

// withUserns asks for a user namespace of the pod's own as kubelet does: one range of 65536
// IDs at a multiple of 65536 (kubelet's first is 65536*1 past its own IDs; any free one does).
func withUserns(o *runtimeapi.NamespaceOption) {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1 << 20, Length: 1 << 16}}
	o.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
}

// kubeletPodNamespaces: see kubeletNamespaces.
func kubeletPodNamespaces() *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
}

// benchPod is the pod the CRI benchmarks run: kubelet's namespace options, a log directory
// of its own under logDir.
func benchPod(name, logDir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "cribench", Uid: name + "-uid"},
		LogDirectory: filepath.Join(logDir, name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: kubeletPodNamespaces()}},
	}
}

// sleeper is the benchmarks' container: busybox sleeping until it is stopped.
func sleeper() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: busybox},
		Command:  []string{"sleep", "3600"},
		LogPath:  "sleeper.log",
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: kubeletPodNamespaces()}},
	}
}
