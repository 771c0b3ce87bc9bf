package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/cri"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// daemon holds the services wired together for one run of the daemon.
type daemon struct {
	db     *store.DB
	server *cri.Server
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
	d.server = cri.NewServer(cri.Options{
		Version: version,
		Config:  cfg,
	})
	return d, nil
}

func (d *daemon) close() error {
	var errs []error
	if d.db != nil {
		errs = append(errs, d.db.Close())
	}
	return errors.Join(errs...)
}
