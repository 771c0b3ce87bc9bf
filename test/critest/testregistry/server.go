package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

// server is an in-memory registry holding the images of one layout.
type server struct {
	http *http.Server
	addr *net.TCPAddr
	done chan error
}

// logWriter turns the registry's log lines (one per request) into
// structured log entries at high verbosity: critest makes thousands.
type logWriter struct{ logger logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.logger.V(4).Info("Registry", "line", string(bytes.TrimSpace(p)))
	return len(p), nil
}

// localRef maps a full original reference to the same repository and tag on
// the local registry: the host part is dropped, the path kept, as a
// containerd hosts.toml mirror would request it.
func localRef(host, ref string) (name.Tag, error) {
	orig, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("parse reference %q: %w", ref, err)
	}
	t, err := name.NewTag(fmt.Sprintf("%s/%s:%s", host, orig.RepositoryStr(), orig.TagStr()), name.Insecure)
	if err != nil {
		return name.Tag{}, fmt.Errorf("local reference for %q: %w", ref, err)
	}
	return t, nil
}

// start listens on addr, serves the registry and fills it with every image
// of the layout at dir. When start returns without error the registry
// answers for every reference of the layout.
func start(ctx context.Context, dir, addr string) (_ *server, err error) {
	logger := klog.FromContext(ctx)
	items, err := imagebuild.ReadLayout(dir)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("layout %s holds no image", dir)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	reg := registryHandler(logger)
	s := &server{
		http: &http.Server{
			Handler:           reg,
			ReadHeaderTimeout: 30 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		},
		addr: ln.Addr().(*net.TCPAddr),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.http.Serve(ln) }()
	defer func() {
		if err != nil {
			_ = s.shutdown(context.WithoutCancel(ctx))
		}
	}()
	host := s.addr.String()
	for _, it := range items {
		if err := push(ctx, host, it); err != nil {
			return nil, err
		}
		logger.V(2).Info("Loaded image", "image", it.Ref)
	}
	return s, nil
}

// push uploads one reference to the local registry through its own HTTP API,
// so what is served is exactly what any client would have pushed.
func push(ctx context.Context, host string, it imagebuild.Tagged) error {
	tag, err := localRef(host, it.Ref)
	if err != nil {
		return err
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	switch v := it.Item.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(tag, v, opts...)
	case v1.Image:
		err = remote.Write(tag, v, opts...)
	default:
		err = fmt.Errorf("unsupported item %T", it.Item)
	}
	if err != nil {
		return fmt.Errorf("load %s as %s: %w", it.Ref, tag, err)
	}
	return nil
}

// shutdown stops accepting requests and waits, up to 10 s, for the ones in
// flight.
func (s *server) shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down registry: %w", err)
	}
	return nil
}

// registryHandler is go-containerregistry's in-memory registry with its log
// routed to klog.
func registryHandler(logger logr.Logger) http.Handler {
	return registry.New(registry.Logger(log.New(logWriter{logger: logger}, "", 0)))
}
