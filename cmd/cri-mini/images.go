package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/image"
	"github.com/cri-mini/cri-mini/pkg/store"
)

const imagesUsage = `Usage:
  cri-mini images import [--config F] [--root D] [--state D] FILE
        load an OCI layout (dir or tar) or a 'docker save' archive into the image store
  cri-mini images list [--config F] [--root D] [--state D]
        list the images in the store

With a running daemon the work goes through its admin socket (<state>/admin.sock); without one,
the store under <root> is opened directly.
`

// runImages is the air-gapped node's way to load and inspect images without a registry.
func runImages(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, imagesUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	var f daemonFlags
	fs := flag.NewFlagSet("cri-mini images "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.configPath, "config", config.DefaultPath, "config file (TOML), as the daemon's")
	fs.StringVar(&f.root, "root", "", "persistent state dir, overrides the config's root")
	fs.StringVar(&f.state, "state", "", "volatile state dir (admin socket), overrides the config's state")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	want := map[string]int{"import": 1, "list": 0}
	n, known := want[sub]
	if !known || fs.NArg() != n {
		fmt.Fprint(stderr, imagesUsage)
		return 2
	}
	cfg, err := loadConfig(f, fs)
	if err != nil {
		fmt.Fprintf(stderr, "cri-mini: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())
	var imgs []adminImage
	switch sub {
	case "import":
		imgs, err = importImages(ctx, cfg, fs.Arg(0))
	case "list":
		imgs, err = listImages(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "cri-mini images %s: %v\n", sub, err)
		return 1
	}
	printImages(stdout, imgs)
	return 0
}

func importImages(ctx context.Context, cfg config.Config, file string) ([]adminImage, error) {
	// The daemon may run in another directory: it gets an absolute path.
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", file, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	if c, ok := dialAdmin(adminSocketPath(cfg)); ok {
		return c.importFile(ctx, abs)
	}
	var out []adminImage
	err = withOfflineImages(ctx, cfg, func(s *image.Service) error {
		imgs, err := s.Import(ctx, abs)
		out = toAdminImages(imgs)
		return err
	})
	return out, err
}

func listImages(ctx context.Context, cfg config.Config) ([]adminImage, error) {
	if c, ok := dialAdmin(adminSocketPath(cfg)); ok {
		return c.list(ctx)
	}
	var out []adminImage
	err := withOfflineImages(ctx, cfg, func(s *image.Service) error {
		out = toAdminImages(s.List(""))
		return nil
	})
	return out, err
}

// withOfflineImages opens the store directly, when no daemon answers on the admin socket. The
// database lock (bbolt's flock, with a short timeout) still guards against a daemon that holds
// the store but does not serve the socket yet, or one started with another state dir.
func withOfflineImages(ctx context.Context, cfg config.Config, fn func(*image.Service) error) error {
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", cfg.Root, err)
	}
	db, err := store.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		return fmt.Errorf("%w (is a daemon using %s without serving %s? retry once it serves)", err, cfg.Root, adminSocketPath(cfg))
	}
	defer db.Close()
	// The CLI only lists and adds images; reporting every image as in use makes sure nothing
	// opened this way can ever remove one.
	s, err := openImages(ctx, cfg, db, func(string) bool { return true })
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

func printImages(w io.Writer, imgs []adminImage) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE ID\tSIZE\tNAMES")
	for _, img := range imgs {
		names := append(append([]string(nil), img.RepoTags...), img.RepoDigests...)
		fmt.Fprintf(tw, "%s\t%d\t%s\n", img.ID, img.Size, strings.Join(names, ","))
	}
	tw.Flush()
}
