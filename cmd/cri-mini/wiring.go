package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/cni"
	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/cri"
	"github.com/cri-mini/cri-mini/pkg/idmap"
	"github.com/cri-mini/cri-mini/pkg/image"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
	"github.com/cri-mini/cri-mini/pkg/streaming"
)

// daemon holds the services wired together for one run of the daemon.
type daemon struct {
	db    *store.DB
	cni   *cni.Network
	pods  *sandbox.Manager
	inits *sandbox.PodInits
	// monitorBin is the sealed copy of the monitor binary shared by monitors and pod inits.
	monitorBin *runtime.SealedBinary
	ctrs       *container.Manager
	images     *image.Service
	admin      *adminServer
	stream     *streaming.Server
	server     *cri.Server
}

// newDaemon opens the stores and builds every service. It is the only place where the
// packages are wired together (no package-level state anywhere else).
func newDaemon(ctx context.Context, cfg config.Config) (d *daemon, err error) {
	d = &daemon{}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	d.db, err = store.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		return nil, fmt.Errorf("open metadata: %w", err)
	}
	// libcni's result cache goes under the volatile state dir: it must survive a daemon
	// restart (DEL after a restart needs the exact config and args of the ADD), but it
	// describes kernel objects (veths, the netns pins next to it, rules) that a reboot
	// destroys; after a reboot DEL falls back to the current config, which the CNI spec
	// requires plugins to accept, and releases the IPAM addresses by sandbox ID.
	d.cni, err = cni.New(ctx, cni.Options{
		ConfDir:  cfg.CNI.ConfDir,
		BinDirs:  cfg.CNI.BinDirs,
		CacheDir: filepath.Join(cfg.State, "cni-cache"),
	})
	if err != nil {
		return nil, fmt.Errorf("set up pod network: %w", err)
	}
	// NewManager recovers the sandboxes of the previous run and garbage-collects CNI
	// attachments of sandboxes that no longer exist. Its hooks reach the container
	// manager, which is built after it (it needs the sandboxes): they only run on RPCs,
	// once both exist.
	cgm := cgroups.New()
	// One sealed copy of the lean binary serves monitors, their spawns, pod inits and the
	// holders of pod user namespaces.
	d.monitorBin = runtime.NewSealedBinary(findMonitorBinary())
	// Sealed now, not at the first pod: the monitors must be the version of this daemon,
	// also when a package upgrade replaces the binaries while it runs (they talk a private
	// protocol). A failure here is retried at the first pod.
	if _, err := d.monitorBin.Get(); err != nil {
		klog.FromContext(ctx).Error(err, "Sealing the monitor binary; will retry at the first pod")
	}
	// The managers report lifecycle changes to the CRI server's GetContainerEvents, which
	// is built after them: events knows the server once NewServer binds it.
	events := cri.NewEvents(cri.DefaultEventBuffer)
	d.inits = sandbox.NewPodInits(filepath.Join(cfg.State, "pod-inits"), cgm, d.monitorBin)
	d.pods, err = sandbox.NewManager(ctx, sandbox.Options{
		StateDir: cfg.State,
		RootDir:  cfg.Root,
		DB:       d.db,
		CNI:      d.cni,
		Cgroups:  cgm,
		ShmSize:  cfg.Sandbox.ShmSize,
		// Starts in a few ms where the daemon's binary would take longer to initialise.
		UsernsHolder: d.monitorBin,
		Events:       events.Sandbox,
		Hooks: sandbox.Hooks{
			StopContainers: func(ctx context.Context, id string) error {
				return d.ctrs.StopPod(ctx, id)
			},
			RemoveContainers: func(ctx context.Context, id string) error {
				return d.ctrs.RemovePod(ctx, id)
			},
			StartPodInit: d.inits.Start,
			StopPodInit:  d.inits.Stop,
			StartPod: func(ctx context.Context, id string) error {
				return d.ctrs.StartPod(ctx, id)
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load pod sandboxes: %w", err)
	}
	// Likewise the image store asks the container manager whether an image is in use.
	d.images, err = openImages(ctx, cfg, d.db, func(id string) bool {
		return d.ctrs != nil && d.ctrs.ImageInUse(id)
	})
	if err != nil {
		return nil, err
	}
	d.ctrs, err = container.NewManager(ctx, container.Options{
		DB:            d.db,
		Sandboxes:     d.pods,
		Images:        d.images,
		PodInits:      d.inits,
		Cgroups:       cgm,
		RootDir:       filepath.Join(cfg.Root, "containers"),
		StateDir:      filepath.Join(cfg.State, "mon"), // short: monitor sockets live below
		MonitorLogDir: filepath.Join(cfg.State, "monitor-logs"),
		MonitorCgroup: "/cri-mini-monitors",
		MonitorBinary: d.monitorBin,
		Events:        events.Container,
	})
	if err != nil {
		return nil, fmt.Errorf("load containers: %w", err)
	}
	d.admin, err = startAdmin(ctx, adminSocketPath(cfg), d.images)
	if err != nil {
		return nil, err
	}
	d.stream, err = startStreaming(ctx, cfg, d)
	if err != nil {
		return nil, err
	}
	d.server = cri.NewServer(cri.Options{
		Version:           version,
		Config:            cfg,
		Network:           cri.NewNetworkStatus(d.cni),
		Sandboxes:         d.pods,
		PodNetwork:        d.cni,
		Images:            d.images,
		Containers:        d.ctrs,
		Streaming:         d.stream,
		PodInits:          d.inits,
		PodUserNamespaces: usernsSupported(ctx, cfg.Root, d.monitorBin),
		Events:            events,
	})
	return d, nil
}

func (d *daemon) close() error {
	var errs []error
	// The admin socket goes first: an import in flight finishes before the store closes.
	if d.admin != nil {
		errs = append(errs, d.admin.close())
	}
	// Streaming sessions end before the managers they use close.
	if d.stream != nil {
		errs = append(errs, closeStreaming(d.stream))
	}
	// Pods are left alone: their namespaces and monitors outlive the daemon.
	if d.ctrs != nil {
		d.ctrs.Close()
	}
	if d.cni != nil {
		errs = append(errs, d.cni.Close())
	}
	if d.images != nil {
		d.images.Close()
	}
	// Monitors and pod inits keep running; only this run's copy of their binary is released.
	if d.monitorBin != nil {
		d.monitorBin.Close()
	}
	if d.db != nil {
		errs = append(errs, d.db.Close())
	}
	return errors.Join(errs...)
}

// usernsSupported probes whether pods may have user namespaces here: the layers and the
// containers' dirs under root must be idmappable (Linux 5.12+ and a filesystem that allows
// it; overlay over idmapped layers needs 5.19), and so must tmpfs (/dev/shm), and every
// directory down to root passable. A node where it fails refuses such pods and does not
// advertise the feature, so kubelet does not send them.
func usernsSupported(ctx context.Context, root string, holder *runtime.SealedBinary) bool {
	log := klog.FromContext(ctx)
	err := runtime.Passable(root)
	var exe *os.File
	if err == nil {
		exe, err = holder.Get()
	}
	if err == nil {
		probe := &ns.UserOptions{UIDMappings: []ns.IDMap{{HostID: 65534, Size: 1}}, GIDMappings: []ns.IDMap{{HostID: 65534, Size: 1}}, Holder: exe}
		err = ns.WithUserNamespace(probe, func(path string) error {
			f, err := idmap.OpenUserNS(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := idmap.Supported(root, f); err != nil {
				return err
			}
			// kubelet's secret, configMap and token volumes are tmpfs, idmappable since
			// Linux 6.3: without it nearly every pod would fail at CreateContainer.
			return idmap.Supported("/dev/shm", f)
		})
	}
	if err != nil {
		log.Info("Pod user namespaces are not supported on this node", "root", root, "reason", err.Error())
		return false
	}
	return true
}
