package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/image"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// The admin socket lets `cri-mini images` work while the daemon runs: the daemon holds the
// metadata database's lock, and the CRI has no import RPC. It is a small HTTP API on a unix
// socket in the state dir, mode 0600, that only answers clients with the daemon's own uid.
const adminSocketName = "admin.sock"

func adminSocketPath(cfg config.Config) string { return filepath.Join(cfg.State, adminSocketName) }

// openImages opens the image store the way both the daemon and the offline CLI use it, so that
// they always agree on its layout.
func openImages(ctx context.Context, cfg config.Config, db *store.DB, inUse func(imageID string) bool) (*image.Service, error) {
	writable := filepath.Join(cfg.Root, "containers")
	if err := os.MkdirAll(writable, 0o711); err != nil {
		return nil, fmt.Errorf("create container layers dir: %w", err)
	}
	s, err := image.New(ctx, image.Options{
		Root:                   filepath.Join(cfg.Root, "images"),
		WritableRoot:           writable,
		RegistryConfigDir:      cfg.Registry.ConfigPath,
		MaxConcurrentDownloads: cfg.Registry.MaxConcurrentDownloads,
		ProgressTimeout:        cfg.Registry.ProgressTimeout.Std(),
		DB:                     db,
		InUse:                  inUse,
	})
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

// adminImage is one image as the admin API and the CLI show it.
type adminImage struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags,omitempty"`
	RepoDigests []string `json:"repoDigests,omitempty"`
	Size        uint64   `json:"size"`
}

func toAdminImages(imgs []*image.Image) []adminImage {
	out := make([]adminImage, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, adminImage{ID: img.ID, RepoTags: img.RepoTags, RepoDigests: img.RepoDigests, Size: img.Size})
	}
	return out
}

// adminServer serves the admin API until closed.
type adminServer struct {
	path string
	srv  *http.Server
	done chan struct{}
}

type peerUIDKey struct{}

// startAdmin listens on path and serves GET /images and POST /images/import?path=FILE.
func startAdmin(ctx context.Context, path string, images *image.Service) (*adminServer, error) {
	logger := klog.FromContext(ctx).WithValues("socket", path)
	// A socket left by a daemon that died: the database lock, taken before, proves that no
	// other daemon uses this root, and the CRI socket lock that no other uses this state dir.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale admin socket %s: %w", path, err)
	}
	// No window in which the socket is connectable by others: create it under a 0177 umask.
	oldMask := syscall.Umask(0o177)
	lis, err := net.Listen("unix", path)
	syscall.Umask(oldMask)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /images", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, toAdminImages(images.List("")))
	})
	mux.HandleFunc("POST /images/import", func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Query().Get("path")
		if !filepath.IsAbs(p) {
			http.Error(w, fmt.Sprintf("path must be an absolute file path, got %q", p), http.StatusBadRequest)
			return
		}
		ictx := klog.NewContext(r.Context(), logger)
		imgs, err := images.Import(ictx, p)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, store.ErrInvalidArgument) || errors.Is(err, os.ErrNotExist) {
				code = http.StatusBadRequest
			}
			http.Error(w, err.Error(), code)
			return
		}
		logger.V(2).Info("Images imported", "path", p, "count", len(imgs))
		writeJSON(w, toAdminImages(imgs))
	})
	uid := os.Geteuid()
	a := &adminServer{path: path, done: make(chan struct{})}
	a.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The socket mode already keeps others out; the peer check also holds if an
			// administrator loosens the mode or the state dir by mistake.
			if peer, ok := r.Context().Value(peerUIDKey{}).(int); !ok || peer != uid {
				http.Error(w, "only the daemon's user may use the admin socket", http.StatusForbidden)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if uid, err := peerUID(c); err == nil {
				return context.WithValue(ctx, peerUIDKey{}, uid)
			}
			return ctx
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(err, "Admin socket stopped serving")
		}
	}()
	return a, nil
}

func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return int(cred.Uid), nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		klog.Background().V(4).Info("Write admin response", "err", err)
	}
}

// close stops serving, waiting a bounded time for an import in progress, and removes the socket.
func (a *adminServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shut down admin socket: %w", err), a.srv.Close())
	}
	<-a.done
	if rerr := os.Remove(a.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("remove admin socket: %w", rerr))
	}
	return err
}

// adminClient talks to a running daemon's admin socket.
type adminClient struct{ http *http.Client }

// dialAdmin returns a client when a daemon answers on path; ok is false when no daemon
// listens there (no socket, or a stale one).
func dialAdmin(path string) (_ *adminClient, ok bool) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, false
	}
	c.Close()
	var d net.Dialer
	return &adminClient{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
	}}}, true
}

func (c *adminClient) do(ctx context.Context, method, target string) ([]adminImage, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://cri-mini"+target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the daemon: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the daemon's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("daemon: %s", bytesTrimmed(body))
	}
	var out []adminImage
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("decode the daemon's answer: %w", err)
	}
	return out, nil
}

func (c *adminClient) list(ctx context.Context) ([]adminImage, error) {
	return c.do(ctx, http.MethodGet, "/images")
}

func (c *adminClient) importFile(ctx context.Context, path string) ([]adminImage, error) {
	return c.do(ctx, http.MethodPost, "/images/import?path="+url.QueryEscape(path))
}

func bytesTrimmed(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}
