package container

import (
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// attachStdinChunk is how much of the client's stdin is read and sent at a time.
const attachStdinChunk = 32 << 10

// Attach connects s to the stdio of a running container through its pod's monitor, until
// the container's output ends (nil), or ctx ends or the client stops taking output (an
// error). The container's terminal setting decides the streams: with a tty all output goes
// to s.Stdout and resizes are applied; stdin is only passed on if the container was
// created with stdin. Detaching leaves the container running. Attach does not close
// s.Stdout or s.Stderr: they belong to the caller.
func (m *Manager) Attach(ctx context.Context, idOrPrefix string, s StreamIO) error {
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	c := e.get()
	if c.State != StateRunning {
		return fmt.Errorf("attach to container %s: it is %s, not running: %w", c.ID, c.State, store.ErrFailedPrecondition)
	}
	withStdin := s.Stdin != nil && c.Config.Stdin
	as, err := monitor.DialAttach(ctx, monitor.SocketPath(c.MonitorDir), c.ID, withStdin)
	switch {
	case errors.Is(err, monitor.ErrNotFound):
		return fmt.Errorf("attach to container %s: %w: %w", c.ID, err, store.ErrNotFound)
	case errors.Is(err, monitor.ErrGone):
		// Its stdio went with the monitor; its watcher records it exited.
		return fmt.Errorf("attach to container %s: %w: %w", c.ID, err, store.ErrFailedPrecondition)
	case err != nil:
		return fmt.Errorf("attach to container %s: %w", c.ID, err)
	}
	logger := klog.FromContext(ctx).WithValues("containerID", c.ID)
	logger.V(4).Info("Attached", "stdin", withStdin, "tty", c.Config.TTY)
	// Closing the stream unblocks every goroutine below that uses it.
	stop := context.AfterFunc(ctx, func() { _ = as.Close() })
	defer stop()
	defer as.Close()
	done := make(chan struct{})
	defer close(done)
	if withStdin {
		go copyStdin(as, s.Stdin)
	}
	if c.Config.TTY && s.Resize != nil {
		go forwardResizes(as, s.Resize, done)
	}
	var stdout, stderr io.Writer = s.Stdout, s.Stderr
	if c.Config.TTY {
		stderr = nil // a terminal has one output, sent as stdout
	}
	err = as.CopyOutput(stdout, stderr)
	if ctx.Err() != nil {
		return fmt.Errorf("attach to container %s: %w", c.ID, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", c.ID, err)
	}
	logger.V(4).Info("Attach ended: container output closed")
	return nil
}

// copyStdin sends the client's stdin until it ends, then says so (stdin_once closes the
// container's stdin then). It may outlive Attach while blocked reading a client that sends
// nothing; its next send fails on the closed stream and it returns.
func copyStdin(as *monitor.AttachStream, r io.Reader) {
	buf := make([]byte, attachStdinChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := as.WriteStdin(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = as.CloseStdin()
			return
		}
	}
}

func forwardResizes(as *monitor.AttachStream, ch <-chan TermSize, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case sz, ok := <-ch:
			if !ok {
				return
			}
			if err := as.Resize(sz.Width, sz.Height); err != nil {
				return
			}
		}
	}
}
