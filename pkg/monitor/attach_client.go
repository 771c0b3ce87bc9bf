package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// AttachStream is a connection attached to one container's stdio (see attach_frame.go).
// Output is read by one goroutine (CopyOutput); WriteStdin, CloseStdin and Resize may be
// called from others.
type AttachStream struct {
	conn  net.Conn
	rd    *bufio.Reader
	State ContainerState // the container as the monitor saw it at attach time

	wmu sync.Mutex
}

// DialAttach attaches to container id of the monitor listening at sock. With stdin, what is
// written with WriteStdin reaches the container's stdin (if it was created with one). ctx
// bounds the attach handshake only; Close ends the stream.
func DialAttach(ctx context.Context, sock, id string, stdin bool) (_ *AttachStream, retErr error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, dialError(sock, err)
	}
	defer func() {
		if retErr != nil {
			_ = conn.Close()
		}
	}()
	dl, _ := ctx.Deadline()
	if err := conn.SetDeadline(dl); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	out, err := json.Marshal(Request{Op: opAttach, ID: id, AttachStdin: stdin})
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(out, '\n')); err != nil {
		return nil, fmt.Errorf("monitor attach %s: %w", id, err)
	}
	rd := bufio.NewReaderSize(conn, 64<<10)
	line, err := readLine(rd)
	if err != nil {
		return nil, fmt.Errorf("monitor attach %s: %w", id, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("monitor attach %s: decode response: %w", id, err)
	}
	if err := resp.Err(); err != nil {
		return nil, err
	}
	if !stop() {
		return nil, fmt.Errorf("monitor attach %s: %w", id, ctx.Err())
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	a := &AttachStream{conn: conn, rd: rd}
	if resp.State != nil {
		a.State = *resp.State
	}
	return a, nil
}

// Attach attaches to container id over a connection of its own (a stream occupies it).
func (c *Client) Attach(ctx context.Context, id string, stdin bool) (*AttachStream, error) {
	return DialAttach(ctx, c.path, id, stdin)
}

func (a *AttachStream) write(kind byte, p []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_, err := a.conn.Write(appendFrame(make([]byte, 0, frameHeader+len(p)), kind, p))
	return err
}

// WriteStdin sends p to the container's stdin.
func (a *AttachStream) WriteStdin(p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		if err := a.write(frameStdin, p[:n]); err != nil {
			return fmt.Errorf("attach stdin: %w", err)
		}
		p = p[n:]
	}
	return nil
}

// CloseStdin tells the monitor that this client's stdin ended (with stdin_once the
// container's stdin is closed).
func (a *AttachStream) CloseStdin() error {
	if err := a.write(frameStdinClose, nil); err != nil {
		return fmt.Errorf("attach close stdin: %w", err)
	}
	return nil
}

// Resize sets the container's terminal size (ignored without a tty).
func (a *AttachStream) Resize(width, height uint16) error {
	if err := a.write(frameResize, encodeResize(width, height)); err != nil {
		return fmt.Errorf("attach resize: %w", err)
	}
	return nil
}

// CopyOutput copies the container's output to stdout and stderr (nil discards) until it
// ends, then returns nil. A stream that breaks before the end (the monitor died, Close was
// called, or the monitor dropped this client for falling behind) is an error, as is a
// failed write to stdout or stderr.
func (a *AttachStream) CopyOutput(stdout, stderr io.Writer) error {
	buf := make([]byte, 0, 8192)
	for {
		kind, p, err := readFrame(a.rd, buf)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("attach output: %w", err)
		}
		buf = p[:0]
		var w io.Writer
		switch kind {
		case frameStdout:
			w = stdout
		case frameStderr:
			w = stderr
		case frameEnd:
			return nil
		default:
			return fmt.Errorf("attach output: frame kind %d: %w", kind, ErrInvalid)
		}
		if w == nil || len(p) == 0 {
			continue
		}
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("attach output: %w", err)
		}
	}
}

// Close ends the stream; the container keeps running.
func (a *AttachStream) Close() error { return a.conn.Close() }
