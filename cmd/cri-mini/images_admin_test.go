package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/store"
)

func TestAdminSocket(t *testing.T) {
	base, err := os.MkdirTemp("", "crm-admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	cfg := config.Default()
	cfg.Root, cfg.State = filepath.Join(base, "root"), filepath.Join(base, "state")
	if err := os.MkdirAll(cfg.State, 0o711); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	imgs, err := openImages(ctx, cfg, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer imgs.Close()
	path := adminSocketPath(cfg)
	// A stale socket file from a killed daemon must not stop a new one.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := startAdmin(ctx, path, imgs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %v %v, want a 0600 socket", st, err)
	}
	c, ok := dialAdmin(path)
	if !ok {
		t.Fatal("no daemon answers on the admin socket")
	}
	list, err := c.list(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("list of an empty store = %v, %v", list, err)
	}
	tests := []struct{ path, want string }{
		{"relative.tar", "absolute"},
		{filepath.Join(base, "missing.tar"), "no such file"},
		{cfg.State, "neither a docker archive nor an OCI layout"},
	}
	for _, tt := range tests {
		if _, err := c.importFile(ctx, tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("import %q: %v, want an error containing %q", tt.path, err, tt.want)
		}
	}
	resp, err := c.http.Get("http://cri-mini/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: %d", resp.StatusCode)
	}
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("admin socket left after close: %v", err)
	}
	if _, ok := dialAdmin(path); ok {
		t.Fatal("admin socket still answers after close")
	}
}

func TestRunImagesUsage(t *testing.T) {
	tests := [][]string{
		nil,
		{"frobnicate"},
		{"import"},
		{"import", "a", "b"},
		{"list", "extra"},
	}
	for _, args := range tests {
		var stdout, stderr bytes.Buffer
		if code := runImages(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "Usage:") {
			t.Errorf("runImages(%q) = %d, stderr %q; want 2 and the usage", args, code, stderr.String())
		}
	}
}
