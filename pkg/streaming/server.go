// Package streaming serves the CRI streaming requests (exec, attach, port-forward) over SPDY
// and WebSocket with k8s.io/cri-streaming. The Exec/Attach/PortForward RPCs hand out URLs of
// this server; the adapter here turns the streams it receives into calls on the container
// and sandbox managers.
package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	criserver "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/config"
)

// readHeaderTimeout bounds how long a client may take to send its request headers: the
// upgrade request is small, and a client that trickles it must not hold a connection.
const readHeaderTimeout = 10 * time.Second

// Options configure the streaming server.
type Options struct {
	Config config.Streaming
	// StreamCreationTimeout is how long a SPDY client has to open its streams after the
	// upgrade; 0 takes cri-streaming's default.
	StreamCreationTimeout time.Duration
	// Exec runs exec sessions; Attach attaches to containers (nil: attach answers an
	// error); Sandboxes finds the pod whose port is forwarded.
	Exec      Execer
	Attach    Attacher
	Sandboxes Sandboxes
}

// Server is a running streaming server.
type Server struct {
	cri      criserver.Server
	rt       *runtimeAdapter
	idle     time.Duration
	sessions *sessions
	http     *http.Server
	conns    *connSet
	done     chan error
	addr     string
	tls      bool
}

// Start listens on the configured address (port 0 picks a free one) and serves until
// Close. With tls_cert and tls_key set the URLs are https.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	var tlsConfig *tls.Config
	if o.Config.TLSCert != "" || o.Config.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(o.Config.TLSCert, o.Config.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("streaming: load TLS key pair %s, %s: %w", o.Config.TLSCert, o.Config.TLSKey, err)
		}
		// SPDY and WebSocket upgrades are HTTP/1.1 only.
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	lis, err := net.Listen("tcp", o.Config.Address)
	if err != nil {
		return nil, fmt.Errorf("streaming: listen on %s: %w", o.Config.Address, err)
	}
	defer func() {
		if err != nil {
			_ = lis.Close()
		}
	}()
	cfg := criserver.DefaultConfig
	// The actual address, so that the URLs carry the port picked for port 0.
	cfg.Addr = lis.Addr().String()
	cfg.StreamIdleTimeout = o.Config.IdleTimeout.Std()
	if o.StreamCreationTimeout > 0 {
		cfg.StreamCreationTimeout = o.StreamCreationTimeout
	}
	cfg.TLSConfig = tlsConfig
	rt := &runtimeAdapter{o: o}
	cri, err := criserver.NewServer(cfg, rt)
	if err != nil {
		return nil, fmt.Errorf("streaming: new server: %w", err)
	}
	s := &Server{cri: cri, rt: rt, idle: cfg.StreamIdleTimeout, sessions: newSessions(), conns: newConnSet(),
		done: make(chan error, 1), addr: cfg.Addr, tls: tlsConfig != nil}
	s.http = &http.Server{
		Handler:           s.conns.track(s),
		ReadHeaderTimeout: readHeaderTimeout,
		ConnContext:       s.conns.connContext,
	}
	var served net.Listener = lis
	if tlsConfig != nil {
		served = tls.NewListener(lis, tlsConfig)
	}
	// The connection watcher wraps outermost: it sees the plaintext reads, and a hijacked
	// connection (SPDY, WebSocket) stays a connection it watches.
	served = s.conns.listener(served)
	go func() { s.done <- s.http.Serve(served) }()
	klog.FromContext(ctx).Info("Serving streaming requests", "address", cfg.Addr, "tls", tlsConfig != nil)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close stops accepting, closes every connection, including the upgraded ones the HTTP
// server no longer knows about (which ends their sessions and kills their exec
// processes), and waits up to timeout for the sessions to finish.
func (s *Server) Close(ctx context.Context, timeout time.Duration) error {
	err := s.http.Close()
	s.conns.closeAll()
	if serveErr := <-s.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("streaming: serve: %w", serveErr))
	}
	if !s.conns.wait(timeout) {
		klog.FromContext(ctx).Info("Streaming sessions did not end in time", "timeout", timeout)
	}
	return err
}

// connSet tracks the server's connections and its running handlers. Each connection's
// context ends when a read on it fails or it is closed: after an upgrade, net/http no
// longer watches the connection, and the sessions must still learn that their client
// went away.
type connSet struct {
	mu    sync.Mutex
	conns map[*watchedConn]struct{}
	// Running handlers. Not a WaitGroup: a request on a connection accepted before the
	// shutdown could Add while Close already waits, which a WaitGroup forbids. closing
	// turns such late requests away instead; idle is closed when the last handler ends.
	active  int
	closing bool
	idle    chan struct{}
}

func newConnSet() *connSet { return &connSet{conns: map[*watchedConn]struct{}{}} }

func (cs *connSet) listener(l net.Listener) net.Listener { return &watchListener{Listener: l, cs: cs} }

// connContext gives each connection a context of its own, ended by its watcher.
func (cs *connSet) connContext(ctx context.Context, c net.Conn) context.Context {
	w, ok := c.(*watchedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	w.cancel = cancel
	ended := w.ended
	w.mu.Unlock()
	if ended {
		cancel()
	}
	return ctx
}

func (cs *connSet) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		if cs.closing {
			cs.mu.Unlock()
			http.Error(w, "the streaming server is shutting down", http.StatusServiceUnavailable)
			return
		}
		cs.active++
		cs.mu.Unlock()
		defer cs.handlerDone()
		h.ServeHTTP(w, r)
	})
}

func (cs *connSet) handlerDone() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.active--
	if cs.active == 0 && cs.idle != nil {
		close(cs.idle)
		cs.idle = nil
	}
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	cs.closing = true
	conns := make([]*watchedConn, 0, len(cs.conns))
	for c := range cs.conns {
		conns = append(conns, c)
	}
	cs.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// wait waits for the running handlers, at most timeout; it reports whether they ended.
func (cs *connSet) wait(timeout time.Duration) bool {
	cs.mu.Lock()
	if cs.active == 0 {
		cs.mu.Unlock()
		return true
	}
	if cs.idle == nil {
		cs.idle = make(chan struct{})
	}
	done := cs.idle
	cs.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

type watchListener struct {
	net.Listener
	cs *connSet
}

func (l *watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &watchedConn{Conn: c, cs: l.cs}
	l.cs.mu.Lock()
	l.cs.conns[w] = struct{}{}
	l.cs.mu.Unlock()
	return w, nil
}

// watchedConn ends its context when a read fails for a reason other than a deadline
// (net/http interrupts its own background read with a past deadline when the connection
// is upgraded) or when it is closed.
type watchedConn struct {
	net.Conn
	cs     *connSet
	mu     sync.Mutex
	cancel context.CancelFunc
	ended  bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.end()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.end()
	c.cs.mu.Lock()
	delete(c.cs.conns, c)
	c.cs.mu.Unlock()
	return c.Conn.Close()
}

func (c *watchedConn) end() {
	c.mu.Lock()
	c.ended = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
