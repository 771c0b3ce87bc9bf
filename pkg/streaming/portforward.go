package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

const (
	// dialTimeout bounds a connect to the pod's loopback, which either answers or refuses
	// at once unless a firewall in the pod drops it.
	dialTimeout = 10 * time.Second
	// closeGrace is how long the client may keep sending after the pod closed its side
	// before the connection to the pod is dropped (the client normally resets at once).
	closeGrace = 5 * time.Second
)

// PortForward connects stream to port on the pod's loopback, in the pod's network
// namespace (the host's with the host network). A refused connection is returned as an
// error, which the server reports on this stream's error stream only: the session and
// its other streams go on.
func (a *runtimeAdapter) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	if a.o.Sandboxes == nil {
		return fmt.Errorf("port forward: not configured: %w", store.ErrFailedPrecondition)
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port forward: port %d out of range: %w", port, store.ErrInvalidArgument)
	}
	sb, err := a.o.Sandboxes.Get(podSandboxID)
	if err != nil {
		return fmt.Errorf("port forward: %w", err)
	}
	if sb.State != sandbox.StateReady {
		return fmt.Errorf("port forward: pod %s is %s, not ready: %w", sb.ID, sb.State, store.ErrFailedPrecondition)
	}
	conn, err := dialPod(ctx, sb.NetNSPath, port)
	if err != nil {
		return fmt.Errorf("port forward to pod %s port %d: %w", sb.ID, port, err)
	}
	defer conn.Close()
	logger := klog.FromContext(ctx).WithValues("podSandboxID", sb.ID, "port", port)
	logger.V(4).Info("Port forward connected")
	err = forward(conn, stream, a.o.Config.IdleTimeout.Std())
	logger.V(4).Info("Port forward finished", "err", err)
	return err
}

// dialPod connects to port on the loopback of the network namespace at netns ("" is the
// host's). The socket is created on a thread that joined the namespace (a socket belongs
// to the namespace it was created in); the literal addresses make Dial connect on the
// calling goroutine. IPv4 first, then IPv6, as a server may listen on either.
func dialPod(ctx context.Context, netns string, port int32) (*net.TCPConn, error) {
	var conn net.Conn
	dial := func() error {
		d := net.Dialer{Timeout: dialTimeout}
		var errs []error
		for _, try := range []struct{ network, host string }{{"tcp4", "127.0.0.1"}, {"tcp6", "::1"}} {
			c, err := d.DialContext(ctx, try.network, net.JoinHostPort(try.host, strconv.Itoa(int(port))))
			if err == nil {
				conn = c
				return nil
			}
			errs = append(errs, err)
			// Only a refusal (nothing listens there) is worth the other family.
			if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				break
			}
		}
		return errors.Join(errs...)
	}
	var err error
	if netns == "" {
		err = dial()
	} else {
		err = ns.Do(ns.Paths{Net: netns}, dial)
	}
	if err != nil {
		return nil, err
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("dial: unexpected connection type %T", conn)
	}
	return tc, nil
}

// forward copies between the client's stream and the pod's connection, passing each
// side's end on as a half-close: the client's end of sending becomes a FIN to the pod,
// which may still answer; the pod's close ends the stream's write side. After the client
// stopped sending, a pod that sends nothing for idle is dropped, so that a pod that never
// closes cannot hold the forward forever.
func forward(conn *net.TCPConn, stream io.ReadWriteCloser, idle time.Duration) error {
	toPod := make(chan error, 1)
	fromPod := make(chan error, 1)
	clientDone := make(chan struct{})
	go func() {
		_, err := io.Copy(conn, stream)
		close(clientDone)
		_ = conn.CloseWrite()
		if idle > 0 {
			// A read of the pod's side may already be waiting: bound it too.
			_ = conn.SetReadDeadline(time.Now().Add(idle))
		}
		toPod <- err
	}()
	go func() {
		_, err := io.Copy(stream, &idleReader{conn: conn, idle: idle, after: clientDone})
		fromPod <- err
	}()
	select {
	case err := <-fromPod:
		// The pod closed (or failed): end the client's stream, let it finish briefly.
		_ = stream.Close()
		select {
		case <-toPod:
		case <-time.After(closeGrace):
		}
		return ignoreClosed(err)
	case err := <-toPod:
		if err != nil {
			return ignoreClosed(err)
		}
		err = <-fromPod
		_ = stream.Close()
		return ignoreClosed(err)
	}
}

// idleReader reads the pod's connection; once after is closed every read must bring data
// within idle.
type idleReader struct {
	conn  *net.TCPConn
	idle  time.Duration
	after <-chan struct{}
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.idle > 0 {
		select {
		case <-r.after:
			_ = r.conn.SetReadDeadline(time.Now().Add(r.idle))
		default:
		}
	}
	return r.conn.Read(p)
}

// ignoreClosed drops the errors of a connection that was closed under a copy, the normal
// end of one direction when the other ended the forward.
func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}
