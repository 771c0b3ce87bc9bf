package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/cri"
	"github.com/cri-mini/cri-mini/pkg/idlefree"
)

// daemonFlags are the command-line overrides of the config file.
type daemonFlags struct {
	configPath string
	listen     string
	root       string
	state      string
}

func parseDaemonFlags(args []string) (daemonFlags, *flag.FlagSet, error) {
	var f daemonFlags
	fs := flag.NewFlagSet("cri-mini daemon", flag.ContinueOnError)
	fs.StringVar(&f.configPath, "config", config.DefaultPath, "config file (TOML); see 'cri-mini config default'")
	fs.StringVar(&f.listen, "listen", "", "CRI socket path, overrides the config's listen")
	fs.StringVar(&f.root, "root", "", "persistent state dir, overrides the config's root")
	fs.StringVar(&f.state, "state", "", "volatile state dir, overrides the config's state")
	klog.InitFlags(fs)
	return f, fs, fs.Parse(args)
}

// loadConfig reads the file, applies flag overrides and validates the result.
func loadConfig(f daemonFlags, fs *flag.FlagSet) (config.Config, error) {
	explicit := false
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "config" {
			explicit = true
		}
	})
	cfg, err := config.Load(f.configPath, explicit)
	if err != nil {
		return cfg, err
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.root != "" {
		cfg.Root = f.root
	}
	if f.state != "" {
		cfg.State = f.state
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid config: %w", err)
	}
	return cfg, nil
}

func runDaemon(args []string) int {
	f, fs, err := parseDaemonFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := loadConfig(f, fs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-mini: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := klog.Background()
	ctx = klog.NewContext(ctx, logger)
	if err := serve(ctx, cfg); err != nil {
		logger.Error(err, "Daemon failed")
		klog.Flush()
		return 1
	}
	klog.Flush()
	return 0
}

// serve runs the daemon until ctx is cancelled (SIGTERM/SIGINT), then shuts down gracefully.
// Containers are never touched by a shutdown: they belong to their pod monitors.
func serve(ctx context.Context, cfg config.Config) error {
	logger := klog.FromContext(ctx)
	// Claim the socket before opening any state, so that a second daemon fails with a clear
	// message and touches nothing of the first one's.
	lis, lock, err := listenSocket(cfg.Listen)
	if err != nil {
		return err
	}
	defer lock.Close()
	d, err := newDaemon(ctx, cfg)
	if err != nil {
		lis.Close()
		removeSocket(cfg.Listen)
		return err
	}
	defer d.close()
	interceptor := cri.NewInterceptor(logger)
	// Pod churn leaves the daemon's heap full of freed pages the scavenger returns only
	// slowly; give them back once the churn is over.
	idle := idlefree.New(3 * time.Second)
	defer idle.Stop()
	interceptor.OnChurn(idle.Touch)
	// WaitForHandlers: Stop returns only once every handler has returned, so the stores they
	// use are never closed under them.
	g := grpc.NewServer(append(interceptor.ServerOptions(), grpc.WaitForHandlers(true))...)
	d.server.Register(g)

	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	logger.Info("Serving CRI", "socket", cfg.Listen, "version", version, "commit", gitCommit)

	select {
	case err := <-serveErr:
		removeSocket(cfg.Listen)
		return fmt.Errorf("serve CRI on %s: %w", cfg.Listen, err)
	case <-ctx.Done():
	}
	logger.Info("Shutting down: no new RPCs, waiting for in-flight ones", "timeout", cfg.ShutdownTimeout.Std())
	defer removeSocket(cfg.Listen)
	graceful := make(chan struct{})
	go func() { g.GracefulStop(); close(graceful) }()
	select {
	case <-graceful:
	case <-time.After(cfg.ShutdownTimeout.Std()):
		logger.Info("In-flight RPCs did not finish in time, closing them")
		g.Stop()
	}
	return nil
}

// listenSocket creates the CRI socket, mode 0660 owned by root. A stale socket left by a daemon
// that died is replaced; a socket that a live daemon still answers on is left alone and start-up
// fails, so a second daemon never steals the first one's clients.
func listenSocket(path string) (_ net.Listener, lock *os.File, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, nil, fmt.Errorf("create socket dir: %w", err)
	}
	// The lock file makes two daemons started at the same moment exclusive; the dial below
	// also catches a live daemon that holds the socket under another lock file layout.
	lock, err = os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open socket lock: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, nil, fmt.Errorf("another cri-mini is already serving %s (lock %s.lock is held): stop it first or choose another socket with --listen", path, path)
	}
	// The lock is held until the process exits; the kernel releases it even on SIGKILL.
	if _, err := os.Lstat(path); err == nil {
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return nil, nil, fmt.Errorf("another cri-mini is already serving %s: stop it first or choose another socket with --listen", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// Create the socket with no permissions for others from the start, then set the final mode:
	// there is no window in which the socket is world-connectable.
	oldMask := syscall.Umask(0o177)
	lis, err := net.Listen("unix", path)
	syscall.Umask(oldMask)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The socket is removed by serve after shutdown, not implicitly by Close.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	if err := os.Chown(path, 0, 0); err != nil {
		lis.Close()
		return nil, nil, fmt.Errorf("chown socket %s: %w", path, err)
	}
	return lis, lock, nil
}

func removeSocket(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		klog.Background().Error(err, "Remove socket", "socket", path)
	}
}
