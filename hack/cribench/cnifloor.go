package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/ns"
)

// floorOptions select the conflist whose plugins set the floor, and the bridge and subnet
// it is rewritten to, so the benchmark's pods never meet the daemon's.
type floorOptions struct {
	conf   string // the daemon's conflist
	binDir string // the plugins
	bridge string
	subnet string
}

// sandboxFloorBench measures RunPodSandbox, StopPodSandbox and RemovePodSandbox of a pod
// like critest's benchmark pod, and, interleaved with them, the "CNI floor": the same
// conflist's ADD then DEL through the daemon's own libcni wrapper on a network namespace
// made here. An RPC median minus its floor is the runtime's own overhead.
func (b *bench) sandboxFloorBench(ctx context.Context, o floorOptions, n int, work string) ([]*samples, error) {
	// The CNI wrapper logs what the daemon would; here that is noise between the figures.
	ctx = klog.NewContext(ctx, logr.Discard())
	nw, cleanup, err := newFloorNetwork(ctx, o, filepath.Join(work, "floor"))
	if err != nil {
		return nil, err
	}
	defer cleanup()
	run := &samples{name: "RunPodSandbox"}
	stop := &samples{name: "StopPodSandbox"}
	remove := &samples{name: "RemovePodSandbox"}
	add := &samples{name: "CNI floor ADD"}
	del := &samples{name: "CNI floor DEL"}
	// SIGINT or SIGTERM ends the loop between iterations, so the floor's pod of the current
	// one is still deleted and the cleanup below runs.
	sig, stopSig := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSig()
	for i := 0; i < n && sig.Err() == nil; i++ {
		if err := b.sandboxOnce(ctx, i, run, stop, remove); err != nil {
			return nil, err
		}
		if err := floorOnce(ctx, nw, filepath.Join(work, "floor", "ns"), i, add, del); err != nil {
			return nil, err
		}
	}
	return []*samples{run, stop, remove, add, del}, nil
}

// sandboxOnce runs one pod through Run, Stop and Remove with critest's benchmark config (no
// namespace options, so a shared PID namespace; the runtime's default cgroup parent).
func (b *bench) sandboxOnce(ctx context.Context, i int, run, stop, remove *samples) error {
	name := fmt.Sprintf("cribench-sb-%d-%d", os.Getpid(), i)
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "cribench", Uid: name + "-uid"},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
	var pod string
	if err := timed(run, func() error {
		r, err := b.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err == nil {
			pod = r.PodSandboxId
		}
		return err
	}); err != nil {
		return err
	}
	err := timed(stop, func() error {
		_, err := b.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		return err
	})
	// Remove even after a failed Stop, so the pod does not outlive the benchmark.
	rerr := timed(remove, func() error {
		_, err := b.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
		return err
	})
	return errors.Join(err, rerr)
}

// floorNetwork is the name of the floor's network; its rules carry it in their comments.
const floorNetwork = "cribench-floor"

// floorOnce pins a fresh network namespace (as RunPodSandbox does, untimed), times ADD and
// DEL on it, and unpins it.
func floorOnce(ctx context.Context, n *cni.Network, nsDir string, i int, add, del *samples) (retErr error) {
	dir := filepath.Join(nsDir, fmt.Sprint(i))
	pins, err := ns.Pin(ns.PinOptions{Dir: dir, Kinds: []ns.Kind{ns.Net}})
	if err != nil {
		return fmt.Errorf("CNI floor: %w", err)
	}
	defer func() {
		retErr = errors.Join(retErr, ns.Unpin(pins[ns.Net]), os.Remove(dir))
	}()
	name := fmt.Sprintf("cribench-floor-%d-%d", os.Getpid(), i)
	pod := cni.Pod{ID: name, NetNS: pins[ns.Net], Name: name, Namespace: "cribench", UID: name + "-uid"}
	// A failed ADD has undone itself (Setup runs DEL).
	if err := timed(add, func() error {
		_, err := n.Setup(ctx, pod)
		return err
	}); err != nil {
		return err
	}
	return timed(del, func() error { return n.Teardown(ctx, pod) })
}

// newFloorNetwork writes o.conf, rewritten for o.bridge and o.subnet with host-local's
// leases under dir, and loads it. cleanup removes the bridge (when this run made it) and
// dir; the plugins' DEL has already removed each pod's rules and address.
func newFloorNetwork(ctx context.Context, o floorOptions, dir string) (*cni.Network, func(), error) {
	if _, err := net.InterfaceByName(o.bridge); err == nil {
		return nil, nil, fmt.Errorf("CNI floor: bridge %s exists already: pick another with -floor-bridge", o.bridge)
	}
	conf, err := rewriteConflist(o, filepath.Join(dir, "ipam"))
	if err != nil {
		return nil, nil, err
	}
	confDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("CNI floor: %w", err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-floor.conflist"), conf, 0o600); err != nil {
		return nil, nil, fmt.Errorf("CNI floor: %w", err)
	}
	n, err := cni.New(ctx, cni.Options{
		ConfDir: confDir, BinDirs: []string{o.binDir}, CacheDir: filepath.Join(dir, "cache"),
		// No periodic STATUS exec during the measurement.
		StatusInterval: time.Hour,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("CNI floor: %w", err)
	}
	cleanup := func() {
		_ = n.Close()
		if err := removeNATRules(floorNetwork); err != nil {
			fmt.Fprintf(os.Stderr, "cribench: %v\n", err)
		}
		if _, err := net.InterfaceByName(o.bridge); err == nil {
			if out, err := exec.Command("ip", "link", "del", o.bridge).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "cribench: delete bridge %s: %v: %s\n", o.bridge, err, out)
			}
		}
		_ = os.RemoveAll(dir)
	}
	if n.Name() == "" {
		cleanup()
		return nil, nil, fmt.Errorf("CNI floor: %s is not a usable network config", o.conf)
	}
	return n, cleanup, nil
}

// rewriteConflist points every bridge plugin at o.bridge and every host-local IPAM at
// o.subnet, with its leases under dataDir. Anything else is kept as it is, so the floor runs
// the same plugins with the same options as the daemon.
func rewriteConflist(o floorOptions, dataDir string) ([]byte, error) {
	raw, err := os.ReadFile(o.conf)
	if err != nil {
		return nil, fmt.Errorf("CNI floor: %w", err)
	}
	var list map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("CNI floor: parse %s: %w", o.conf, err)
	}
	plugins, _ := list["plugins"].([]any)
	if len(plugins) == 0 {
		return nil, fmt.Errorf("CNI floor: %s has no plugins", o.conf)
	}
	list["name"] = floorNetwork
	for _, p := range plugins {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if pm["type"] == "bridge" {
			pm["bridge"] = o.bridge
		}
		if ipam, ok := pm["ipam"].(map[string]any); ok && ipam["type"] == "host-local" {
			ipam["ranges"] = []any{[]any{map[string]any{"subnet": o.subnet}}}
			ipam["dataDir"] = dataDir
		}
	}
	return json.Marshal(list)
}

// printFloor prints the RPC medians next to containerd's anchors, the floor, and what is
// left: the runtime's own overhead per RPC.
func printFloor(n int, r []*samples) {
	run, stop, remove, add, del := r[0], r[1], r[2], r[3], r[4]
	ms := func(s *samples) float64 { return float64(s.median().Microseconds()) / 1000 }
	fmt.Printf("pod sandbox RPCs and the CNI floor (median of %d, ms)\n", n)
	issueAnchors.row(run.name, ms(run), "ms")
	issueAnchors.row(stop.name, ms(stop), "ms")
	issueAnchors.row(remove.name, ms(remove), "ms")
	issueAnchors.row(add.name, ms(add), "ms")
	issueAnchors.row(del.name, ms(del), "ms")
	issueAnchors.row("RunPodSandbox - ADD floor", ms(run)-ms(add), "ms")
	issueAnchors.row("StopPodSandbox - DEL floor", ms(stop)-ms(del), "ms")
}
