package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/pty"
)

// maxClientBacklog bounds the output queued for one attached client. Once a client is this
// far behind, the output copier waits for it, which slows the container down to the pace of
// its attached clients, as containerd and conmon do: an attached `cat` of a large file loses
// nothing.
const maxClientBacklog = 1 << 20

// clientStallTimeout is how long a client may take no output at all while its backlog is
// full. Then it is dropped, so a stuck or dead client cannot hold the container (blocked
// on a full pipe) and its log for longer.
const clientStallTimeout = 5 * time.Second

// keptClientBuffer is the largest write buffer a client keeps between bursts.
const keptClientBuffer = 64 << 10

// endWriteTimeout bounds flushing the last output and the end frame to a client.
const endWriteTimeout = 5 * time.Second

// attachHub fans a container's output out to its attached clients and funnels their stdin
// and resizes into the container.
type attachHub struct {
	log       klog.Logger
	stdin     *os.File // monitor's end of the container's stdin, nil without stdin
	term      *os.File // terminal master (for resizes), nil without a tty
	stdinOnce bool

	stdinMu sync.Mutex // one client's stdin chunk is written whole before another's

	mu          sync.Mutex
	clients     map[*attachClient]struct{}
	streams     int           // output copiers still running
	done        chan struct{} // closed once every copier has ended
	stdinClosed bool
}

func newAttachHub(log klog.Logger, opts CreateOptions, sio *stdio) *attachHub {
	h := &attachHub{log: log, stdin: sio.stdin, stdinOnce: opts.StdinOnce, done: make(chan struct{})}
	if opts.TTY {
		h.term = sio.stdout
	}
	return h
}

// addStream counts an output copier; called before it starts.
func (h *attachHub) addStream() {
	h.mu.Lock()
	h.streams++
	h.mu.Unlock()
}

// streamDone is called when a copier ends; the last one ends every attachment.
func (h *attachHub) streamDone() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams--
	if h.streams == 0 {
		close(h.done)
	}
}

// broadcast queues one chunk of output for every client, waiting for a client whose backlog
// is full (see clientStallTimeout). The hub's lock is not held while waiting: stdin and new
// clients go on meanwhile.
func (h *attachHub) broadcast(kind byte, p []byte) {
	h.mu.Lock()
	if len(h.clients) == 0 {
		h.mu.Unlock()
		return
	}
	clients := make([]*attachClient, 0, len(h.clients))
	for cl := range h.clients {
		clients = append(clients, cl)
	}
	h.mu.Unlock()
	for _, cl := range clients {
		if cl.enqueue(kind, p) {
			continue
		}
		h.remove(cl)
		if cl.kill() {
			h.log.Info("Dropping an attached client that took no output", "stalled", clientStallTimeout, "backlogBytes", maxClientBacklog)
		}
	}
}

// add registers a client; false when the output has already ended.
func (h *attachHub) add(cl *attachClient) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
		return false
	default:
	}
	if h.clients == nil {
		h.clients = map[*attachClient]struct{}{}
	}
	h.clients[cl] = struct{}{}
	return true
}

func (h *attachHub) remove(cl *attachClient) {
	h.mu.Lock()
	delete(h.clients, cl)
	h.mu.Unlock()
}

// writeStdin writes a client's chunk to the container's stdin; dropped without stdin or
// once it was closed.
func (h *attachHub) writeStdin(p []byte) error {
	if h.stdin == nil {
		return nil
	}
	h.mu.Lock()
	closed := h.stdinClosed
	h.mu.Unlock()
	if closed {
		return nil
	}
	h.stdinMu.Lock()
	defer h.stdinMu.Unlock()
	_, err := h.stdin.Write(p)
	return err
}

// stdinEnded is called when an attached client's stdin ends. With stdin_once the
// container's stdin is closed, so the process reads EOF (containerd and CRI-O do the
// same). A terminal cannot be half-closed: the master is also the container's output, so
// with a tty stdin stays open.
func (h *attachHub) stdinEnded() {
	if !h.stdinOnce || h.stdin == nil || h.term != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.stdinClosed {
		h.stdinClosed = true
		_ = h.stdin.Close()
	}
}

// resize sets the terminal size; a no-op without a tty. Control holds a reference on the
// descriptor, so a master closed by its copier is never confused with a reused number.
func (h *attachHub) resize(width, height uint16) error {
	if h.term == nil {
		return nil
	}
	return pty.Resize(h.term, width, height)
}

// serveAttach answers an attach request and then serves the connection as a stream of the
// container's stdio until its output ends or the client goes away.
func (s *Server) serveAttach(ctx context.Context, conn net.Conn, rd *bufio.Reader, req *Request) {
	log := klog.FromContext(ctx).WithValues("containerID", req.ID)
	s.mu.Lock()
	c, err := s.lookup(req.ID)
	var st ContainerState
	if err == nil {
		st = c.state()
	}
	s.mu.Unlock()
	if err != nil {
		_ = writeResponse(conn, errorResponse(err))
		return
	}
	cl := newAttachClient(conn)
	// Registered before the answer is written: output produced once the client has its
	// answer is queued for it, none is lost in between.
	attached := c.hub.add(cl)
	if err := writeResponse(conn, Response{State: &st}); err != nil {
		c.hub.remove(cl)
		return
	}
	log.V(2).Info("Client attached", "stdin", req.AttachStdin)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); cl.writeLoop() }()
	go func() {
		if attached {
			select {
			case <-c.hub.done:
			case <-c.exited: // a leaked grandchild may hold the output open
			case <-cl.gone:
			}
			c.hub.remove(cl)
		}
		cl.end()
	}()
	c.readClient(rd, cl, req.AttachStdin)
	c.hub.remove(cl)
	cl.kill()
	<-writerDone
	log.V(2).Info("Client detached")
}

// readClient serves the frames a client sends until it goes away. Without attachStdin its
// stdin frames are dropped.
func (c *container) readClient(rd *bufio.Reader, cl *attachClient, attachStdin bool) {
	stdinOpen := attachStdin
	defer func() {
		if stdinOpen {
			c.hub.stdinEnded()
		}
	}()
	buf := make([]byte, 0, 4096)
	for {
		kind, p, err := readFrame(rd, buf)
		if err != nil {
			return
		}
		buf = p[:0]
		switch kind {
		case frameStdin:
			if stdinOpen {
				_ = c.hub.writeStdin(p) // a container that closed its stdin drops input
			}
		case frameStdinClose:
			if stdinOpen {
				stdinOpen = false
				c.hub.stdinEnded()
			}
		case frameResize:
			w, h, err := decodeResize(p)
			if err != nil {
				return
			}
			_ = c.hub.resize(w, h) // the terminal may be gone with the container
		default:
			return
		}
	}
}

func writeResponse(conn net.Conn, resp Response) error {
	out, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = conn.Write(append(out, '\n'))
	return err
}

// attachClient is one attached connection's output queue and its writer's state.
type attachClient struct {
	conn net.Conn
	gone chan struct{} // closed by kill

	mu      sync.Mutex
	cond    *sync.Cond
	drained chan struct{} // signalled (not closed) whenever the writer makes progress
	buf     []byte        // encoded frames not yet written
	ending  bool          // write what is queued, then the end frame, then half-close
	dead    bool
}

func newAttachClient(conn net.Conn) *attachClient {
	cl := &attachClient{conn: conn, gone: make(chan struct{}), drained: make(chan struct{}, 1)}
	cl.cond = sync.NewCond(&cl.mu)
	return cl
}

// enqueue queues a frame, waiting while the client's backlog is full; false when the client
// took nothing for clientStallTimeout (or is gone).
func (cl *attachClient) enqueue(kind byte, p []byte) bool {
	var stall *time.Timer
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	for {
		cl.mu.Lock()
		if cl.dead || cl.ending {
			cl.mu.Unlock()
			return !cl.dead
		}
		// An empty backlog takes any chunk, however large: progress is always possible.
		if len(cl.buf) == 0 || len(cl.buf)+frameHeader+len(p) <= maxClientBacklog {
			cl.buf = appendFrame(cl.buf, kind, p)
			cl.cond.Signal()
			cl.mu.Unlock()
			return true
		}
		cl.mu.Unlock()
		if stall == nil {
			stall = time.NewTimer(clientStallTimeout)
		}
		select {
		case <-cl.drained:
			// The client took output: it is slow, not stuck. Wait for it afresh.
			stall.Reset(clientStallTimeout)
		case <-cl.gone:
			return false
		case <-stall.C:
			return false
		}
	}
}

// kill drops the client at once: its connection is closed, which also ends its reader.
// It reports whether the client was still alive.
func (cl *attachClient) kill() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.dead {
		return false
	}
	cl.dead = true
	cl.buf = nil
	close(cl.gone)
	_ = cl.conn.Close()
	cl.cond.Signal()
	return true
}

// end makes the writer flush the queue, send the end frame and half-close the connection.
func (cl *attachClient) end() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.dead || cl.ending {
		return
	}
	cl.ending = true
	_ = cl.conn.SetWriteDeadline(time.Now().Add(endWriteTimeout))
	cl.cond.Signal()
}

// writePiece is how much output is written to a client between two progress signals.
const writePiece = 32 << 10

// progress wakes an output copier waiting for room in this client's backlog.
func (cl *attachClient) progress() {
	select {
	case cl.drained <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// writeLoop writes queued frames to the connection until the client is killed or ended.
func (cl *attachClient) writeLoop() {
	var out []byte
	for {
		cl.mu.Lock()
		for len(cl.buf) == 0 && !cl.ending && !cl.dead {
			cl.cond.Wait()
		}
		if cl.dead {
			cl.mu.Unlock()
			return
		}
		last := len(cl.buf) == 0 // then ending is set
		out, cl.buf = cl.buf, out[:0]
		cl.mu.Unlock()
		cl.progress()
		if last {
			out = appendFrame(out, frameEnd, nil)
		}
		// In pieces, each one progress: a slow client that keeps reading is never taken
		// for a stuck one, however long the whole backlog takes it.
		for rest := out; len(rest) > 0; {
			n := min(len(rest), writePiece)
			if _, err := cl.conn.Write(rest[:n]); err != nil {
				cl.kill()
				return
			}
			rest = rest[n:]
			cl.progress()
		}
		if cap(out) > keptClientBuffer {
			out = nil // a burst is over: do not keep its buffer for the attachment's life
		}
		if last {
			// Half-close rather than close: closing a unix socket with unread input resets
			// it, and the client could lose the end of the output. The reader ends when
			// the client closes, or at the deadline.
			if cw, ok := cl.conn.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
				cl.kill()
				return
			}
			_ = cl.conn.SetReadDeadline(time.Now().Add(endWriteTimeout))
			return
		}
	}
}
