// Package cni wraps libcni for pod sandboxes: it loads the first valid network config of a
// directory (watching it, so a config written after start-up makes the node's network
// ready without a restart), runs ADD/DEL/CHECK/STATUS/GC, and keeps libcni's result cache
// in a directory of its own so DEL works after a daemon restart and after a config change.
package cni

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// cleanupTimeout bounds an undo step that runs after the caller's context was cancelled.
const cleanupTimeout = time.Minute

// ErrNotReady is wrapped when no usable network config is loaded.
var ErrNotReady = errors.New("network not ready")

// Options configure a Network.
type Options struct {
	ConfDir  string   // directory of .conflist/.conf/.json files
	BinDirs  []string // plugin binary directories, searched in order
	CacheDir string   // libcni result cache; keep it under the daemon's root or state dir
	IfName   string   // interface name inside the pod; default eth0
	// StatusTimeout bounds one STATUS call to the plugins; default 5s.
	StatusTimeout time.Duration
	// StatusInterval is how often the plugins' STATUS is checked again; default 10s.
	StatusInterval time.Duration
}

// Network is the node's pod network. It is safe for concurrent use.
type Network struct {
	opts Options
	cni  *libcni.CNIConfig

	mu       sync.RWMutex
	conf     *libcni.NetworkConfigList
	confFile string
	loadErr  error
	podCIDR  string
	// The last readiness verdict. Status answers from it and never runs a plugin: kubelet
	// polls Status and one slow plugin must not make the node NotReady.
	ready  bool
	reason string

	watcher  *fsnotify.Watcher
	done     chan struct{} // closed when the watch loop has ended
	stop     chan struct{} // closed by Close to end the status loop
	stopOnce sync.Once
	stopped  chan struct{} // closed when the status loop has ended
}

// New loads the network config and starts watching ConfDir (created if missing) until
// Close. A missing config is not an error: the network simply reports not ready.
func New(ctx context.Context, o Options) (*Network, error) {
	if o.ConfDir == "" || len(o.BinDirs) == 0 || o.CacheDir == "" {
		return nil, fmt.Errorf("cni: conf dir, plugin dirs and cache dir are required")
	}
	if o.IfName == "" {
		o.IfName = "eth0"
	}
	if o.StatusTimeout == 0 {
		o.StatusTimeout = 5 * time.Second
	}
	if o.StatusInterval == 0 {
		o.StatusInterval = 10 * time.Second
	}
	if err := os.MkdirAll(o.ConfDir, 0o755); err != nil {
		return nil, fmt.Errorf("create CNI conf dir %s: %w", o.ConfDir, err)
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("create CNI cache dir %s: %w", o.CacheDir, err)
	}
	n := &Network{
		opts:    o,
		cni:     libcni.NewCNIConfigWithCacheDir(o.BinDirs, o.CacheDir, nil),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch CNI conf dir: %w", err)
	}
	// Watch before the first load so a file written in between is not missed.
	if err := w.Add(o.ConfDir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watch CNI conf dir %s: %w", o.ConfDir, err)
	}
	n.watcher = w
	n.Reload(ctx)
	go n.watch(klog.FromContext(ctx))
	go n.statusLoop(klog.FromContext(ctx))
	return n, nil
}

// Close stops watching the conf dir and checking the plugins.
func (n *Network) Close() error {
	err := n.watcher.Close()
	<-n.done
	n.stopOnce.Do(func() { close(n.stop) })
	<-n.stopped
	return err
}

// statusLoop checks the plugins' STATUS again every StatusInterval, so a plugin that becomes
// ready (or stops being ready) shows in Status without a config change.
func (n *Network) statusLoop(logger klog.Logger) {
	defer close(n.stopped)
	ctx := klog.NewContext(context.Background(), logger)
	t := time.NewTicker(n.opts.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.refreshStatus(ctx)
		}
	}
}

// refreshStatus computes the readiness verdict for the loaded config and records it, unless
// the config changed meanwhile (the newer config's own refresh wins).
func (n *Network) refreshStatus(ctx context.Context) {
	conf, err := n.current()
	ready, reason := true, ""
	if err != nil {
		ready, reason = false, err.Error()
	} else {
		sctx, cancel := context.WithTimeout(ctx, n.opts.StatusTimeout)
		err = n.cni.GetStatusNetworkList(sctx, conf)
		cancel()
		if err != nil {
			ready, reason = false, fmt.Sprintf("network %s: plugin status: %v", conf.Name, err)
		}
	}
	n.mu.Lock()
	if n.conf == conf {
		if ready != n.ready || reason != n.reason {
			klog.FromContext(ctx).V(2).Info("CNI network readiness changed", "ready", ready, "reason", reason)
		}
		n.ready, n.reason = ready, reason
	}
	n.mu.Unlock()
}

func (n *Network) watch(logger klog.Logger) {
	defer close(n.done)
	ctx := klog.NewContext(context.Background(), logger)
	for {
		select {
		case ev, ok := <-n.watcher.Events:
			if !ok {
				return
			}
			logger.V(4).Info("CNI conf dir changed", "event", ev.String())
			n.Reload(ctx)
		case err, ok := <-n.watcher.Errors:
			if !ok {
				return
			}
			logger.Error(err, "Watching CNI conf dir", "dir", n.opts.ConfDir)
		}
	}
}

// Reload picks the first valid config file by name, like containerd and CRI-O.
func (n *Network) Reload(ctx context.Context) {
	logger := klog.FromContext(ctx)
	conf, file, err := loadFirst(n.opts.ConfDir)
	n.mu.Lock()
	changed := file != n.confFile
	n.conf, n.confFile, n.loadErr = conf, file, err
	n.mu.Unlock()
	n.refreshStatus(ctx)
	if changed {
		if err != nil {
			logger.Info("No usable CNI network config", "dir", n.opts.ConfDir, "reason", err.Error())
		} else {
			logger.Info("Loaded CNI network config", "file", file, "network", conf.Name, "cniVersion", conf.CNIVersion)
		}
	}
}

func loadFirst(dir string) (*libcni.NetworkConfigList, string, error) {
	files, err := libcni.ConfFiles(dir, []string{".conflist", ".conf", ".json"})
	if err != nil {
		return nil, "", fmt.Errorf("read CNI conf dir %s: %w", dir, err)
	}
	sort.Strings(files)
	var errs []error
	for _, f := range files {
		conf, err := loadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
			continue
		}
		return conf, f, nil
	}
	err = fmt.Errorf("no network config found in %s: %w", dir, ErrNotReady)
	if len(errs) > 0 {
		err = fmt.Errorf("no valid network config found in %s (%w): %w", dir, errors.Join(errs...), ErrNotReady)
	}
	return nil, "", err
}

func loadFile(f string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(f) == ".conflist" {
		conf, err := libcni.NetworkConfFromFile(f)
		if err != nil {
			return nil, err
		}
		if len(conf.Plugins) == 0 {
			return nil, errors.New("no plugins")
		}
		return conf, nil
	}
	single, err := libcni.ConfFromFile(f)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(single)
}

// current returns the loaded config or why there is none.
func (n *Network) current() (*libcni.NetworkConfigList, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.conf == nil {
		if n.loadErr != nil {
			return nil, n.loadErr
		}
		return nil, fmt.Errorf("no network config found in %s: %w", n.opts.ConfDir, ErrNotReady)
	}
	return n.conf, nil
}

// Name returns the loaded network's name, or "" when none is loaded.
func (n *Network) Name() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.conf == nil {
		return ""
	}
	return n.conf.Name
}

// Status reports whether pods can be networked, and why not, from the last verdict: the
// config load and, with a config of version 1.1.0 or later, the plugins' STATUS, checked at
// every reload and every StatusInterval. It never runs a plugin itself.
func (n *Network) Status(ctx context.Context) (ready bool, reason string) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.ready, n.reason
}

// SetPodCIDR records the node's pod CIDR (from UpdateRuntimeConfig); plugins such as
// host-local get their ranges from their own config, so nothing else is done with it.
func (n *Network) SetPodCIDR(cidr string) {
	n.mu.Lock()
	n.podCIDR = cidr
	n.mu.Unlock()
}

// PodCIDR returns the last recorded pod CIDR.
func (n *Network) PodCIDR() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.podCIDR
}
