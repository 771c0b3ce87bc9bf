package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout bounds a request whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// Client talks to one pod's monitor. It is safe for concurrent use; requests are sent one at
// a time. After an I/O error or timeout the connection is dropped and the next request dials
// again, so a client survives a broken connection (and the monitor never depends on it).
type Client struct {
	path string

	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
}

// Dial connects to the monitor socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	c := &Client{path: path}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.dialLocked(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) dialLocked(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return dialError(c.path, err)
	}
	c.conn, c.rd = conn, bufio.NewReader(conn)
	return nil
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// call sends req and decodes the answer, within ctx's deadline (or DefaultTimeout).
func (c *Client) call(ctx context.Context, req *Request) (*Response, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	// A caller gone by now (it may have waited for the lock) is told so and nothing is sent:
	// roundTrip notices a cancellation only through a goroutine, usually after the write,
	// and the monitor carries out every request it reads.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("monitor %s %s: %w", req.Op, req.ID, err)
	}
	if c.conn == nil {
		if err := c.dialLocked(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := c.roundTrip(ctx, req)
	if err != nil {
		// The stream may hold a late answer now: never reuse it.
		_ = c.conn.Close()
		c.conn = nil
		if ctx.Err() == nil {
			// The connection broke (EOF, ECONNRESET, EPIPE): a monitor that was killed
			// breaks it, and then nothing listens on its socket either. Dialling again
			// tells that apart from a dropped connection, without sending the request
			// twice; a new connection is kept for the next request.
			if derr := c.dialLocked(ctx); errors.Is(derr, ErrGone) {
				return nil, fmt.Errorf("monitor %s %s: %w (%w)", req.Op, req.ID, err, derr)
			}
		}
		return nil, fmt.Errorf("monitor %s %s: %w", req.Op, req.ID, err)
	}
	return resp, resp.Err()
}

// dialError wraps a failed dial of the monitor socket at path, as ErrGone when it says that
// no process serves the socket: connect(2) on a unix socket fails with ECONNREFUSED when
// nothing listens on it (its monitor died without removing it: a SIGKILL or an OOM kill)
// and with ENOENT when it was removed. A timeout or EAGAIN (a full backlog) says nothing of
// the kind.
func dialError(path string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("dial monitor %s: %w: %w", path, ErrGone, err)
	}
	return fmt.Errorf("dial monitor %s: %w", path, err)
}

func (c *Client) roundTrip(ctx context.Context, req *Request) (*Response, error) {
	dl, _ := ctx.Deadline()
	if err := c.conn.SetDeadline(dl); err != nil {
		return nil, err
	}
	// Cancellation before the deadline: unblock the I/O at once. The function gets this
	// request's connection, not the field: once it has started, stop does not wait for it,
	// and by the time it runs call may have dropped the connection (a nil field) or dialled
	// the next one.
	conn := c.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	out, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(append(out, '\n')); err != nil {
		return nil, err
	}
	line, err := readLine(c.rd)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, err
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if !stop() {
		// The cancellation fired as the answer came: its past deadline may land on the
		// connection at any moment, even during the next request. Never reuse it.
		_ = conn.Close()
		c.conn = nil
	}
	return &resp, nil
}

func (c *Client) stateCall(ctx context.Context, req *Request) (ContainerState, error) {
	resp, err := c.call(ctx, req)
	if resp != nil && resp.State != nil {
		return *resp.State, err
	}
	return ContainerState{}, err
}

// Create creates container id, not yet running.
func (c *Client) Create(ctx context.Context, id string, opts CreateOptions) (ContainerState, error) {
	return c.stateCall(ctx, &Request{Op: opCreate, ID: id, Create: &opts})
}

// Start lets a created container run its command.
func (c *Client) Start(ctx context.Context, id string) (ContainerState, error) {
	return c.stateCall(ctx, &Request{Op: opStart, ID: id})
}

// Signal sends sig to the container's process; a no-op for an exited container.
func (c *Client) Signal(ctx context.Context, id string, sig syscall.Signal) (ContainerState, error) {
	return c.stateCall(ctx, &Request{Op: opSignal, ID: id, Signal: int(sig)})
}

// State returns the container's state.
func (c *Client) State(ctx context.Context, id string) (ContainerState, error) {
	return c.stateCall(ctx, &Request{Op: opState, ID: id})
}

// List returns the state of every container of the pod.
func (c *Client) List(ctx context.Context) ([]ContainerState, error) {
	resp, err := c.call(ctx, &Request{Op: opList})
	if err != nil {
		return nil, err
	}
	return resp.States, nil
}

// Wait waits until the container has exited and its exit record is written, or until ctx
// ends (then the error wraps ErrTimeout). The monitor is asked to wait slightly less than
// the context allows, so its answer arrives before the deadline.
func (c *Client) Wait(ctx context.Context, id string) (ContainerState, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	dl, _ := ctx.Deadline()
	wait := time.Until(dl) - 100*time.Millisecond
	if wait <= 0 {
		return ContainerState{}, fmt.Errorf("wait for container %s: %w", id, ErrTimeout)
	}
	return c.stateCall(ctx, &Request{Op: opWait, ID: id, TimeoutMillis: wait.Milliseconds()})
}

// ReopenLog reopens the container's log file (ReopenContainerLog).
func (c *Client) ReopenLog(ctx context.Context, id string) error {
	_, err := c.call(ctx, &Request{Op: opReopen, ID: id})
	return err
}

// Remove forgets an exited (or never started) container and deletes its state.
func (c *Client) Remove(ctx context.Context, id string) error {
	_, err := c.call(ctx, &Request{Op: opRemove, ID: id})
	return err
}

// Shutdown kills the pod's remaining containers, waits for their exit records and makes the
// monitor exit.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.call(ctx, &Request{Op: opShutdown})
	return err
}
