package streaming

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"
)

const (
	// v5Protocol is remotecommand v5 over WebSocket: v4's channels plus a message that
	// closes one channel (the client's end of stdin). kubectl and crictl use only it over
	// WebSocket; cri-streaming serves v1-v4 only.
	v5Protocol = "v5.channel.k8s.io"
	// tunnelPortForwardProtocol is port-forward's SPDY carried in WebSocket binary
	// messages, what client-go's WebSocket port-forward dialer speaks.
	tunnelPortForwardProtocol = "SPDY/3.1+portforward.k8s.io"
	// spdyPortForwardProtocol is the SPDY sub-protocol inside the tunnel.
	spdyPortForwardProtocol = "portforward.k8s.io"
)

// remotecommand channel numbers.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
)

// wantsProtocol reports whether r is a WebSocket upgrade offering protocol.
func wantsProtocol(r *http.Request, protocol string) bool {
	if !wsstream.IsWebSocketRequest(r) {
		return false
	}
	for _, h := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if strings.TrimSpace(p) == protocol {
				return true
			}
		}
	}
	return false
}

type streamOpts struct {
	stdin, stdout, stderr, tty bool
}

// serveV5 runs an exec (cmd non-nil) or an attach over WebSocket v5.
func (s *Server) serveV5(w http.ResponseWriter, r *http.Request, containerID string, cmd []string, o streamOpts) {
	ch := func(on bool, t wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		ch(o.stdin, wsstream.ReadChannel), ch(o.stdout, wsstream.WriteChannel), ch(o.stderr, wsstream.WriteChannel),
		wsstream.WriteChannel, ch(o.tty, wsstream.ReadChannel),
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{v5Protocol: {Binary: true, Channels: channels}})
	conn.SetIdleTimeout(s.idle)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		klog.FromContext(r.Context()).V(2).Info("WebSocket upgrade failed", "err", err)
		return
	}
	defer conn.Close()
	// An empty message on the first writable channel tells the client the session is up.
	first := chanError
	if o.stdout {
		first = chanStdout
	} else if o.stderr {
		first = chanStderr
	}
	_, _ = streams[first].Write(nil)

	var in io.Reader
	var out, errOut io.WriteCloser
	if o.stdin {
		in = streams[chanStdin]
	}
	if o.stdout {
		out = streams[chanStdout]
	}
	if o.stderr {
		errOut = streams[chanStderr]
	}
	var resize chan remotecommand.TerminalSize
	if o.tty {
		resize = make(chan remotecommand.TerminalSize)
		go decodeResize(r.Context(), streams[chanResize], resize)
	}
	if cmd != nil {
		err = s.rt.Exec(r.Context(), containerID, cmd, in, out, errOut, o.tty, resize)
	} else {
		err = s.rt.Attach(r.Context(), containerID, in, out, errOut, o.tty, resize)
	}
	if werr := writeV5Status(streams[chanError], err); werr != nil {
		klog.FromContext(r.Context()).V(2).Info("Writing the session status failed", "containerID", containerID, "err", werr)
	}
}

// decodeResize relays the client's terminal sizes (JSON objects) until its channel ends.
func decodeResize(ctx context.Context, src io.Reader, dst chan<- remotecommand.TerminalSize) {
	defer close(dst)
	dec := json.NewDecoder(src)
	for {
		var sz remotecommand.TerminalSize
		if err := dec.Decode(&sz); err != nil {
			return
		}
		select {
		case dst <- sz:
		case <-ctx.Done():
			return
		}
	}
}

// v5Status is the metav1.Status a remotecommand client reads from the error channel.
type v5Status struct {
	Status  string          `json:"status,omitempty"`
	Message string          `json:"message,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	Details *v5StatusDetail `json:"details,omitempty"`
	Code    int32           `json:"code,omitempty"`
}

type v5StatusDetail struct {
	Causes []v5StatusCause `json:"causes,omitempty"`
}

type v5StatusCause struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// writeV5Status reports how the session ended: success, an exit code (which kubectl
// and crictl exit with), or an internal error.
func writeV5Status(w io.Writer, err error) error {
	st := v5Status{Status: "Success"}
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.Exited():
		st = v5Status{Status: "Failure", Reason: remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &v5StatusDetail{Causes: []v5StatusCause{{Reason: remotecommand.ExitCodeCauseType, Message: strconv.Itoa(exitErr.ExitStatus())}}}}
	default:
		st = v5Status{Status: "Failure", Reason: "InternalError", Code: http.StatusInternalServerError,
			Message: fmt.Sprintf("Internal error occurred: error executing command in container: %v", err)}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// serveTunnel serves a port-forward whose SPDY connection is carried in WebSocket
// binary messages. cri-streaming's SPDY port-forward handler runs unchanged over the
// tunnel: it sees a SPDY upgrade request, and its 101 answer becomes the WebSocket
// upgrade, after which its hijacked connection is the tunnel.
func (s *Server) serveTunnel(w http.ResponseWriter, r *http.Request, req *runtimeapi.PortForwardRequest) {
	resp, err := s.cri.GetPortForward(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	inner := r.Clone(r.Context())
	path, err := urlPath(resp.GetUrl())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	inner.URL.Path = path
	inner.Header.Set("Connection", "Upgrade")
	inner.Header.Set("Upgrade", "SPDY/3.1")
	inner.Header["X-Stream-Protocol-Version"] = []string{spdyPortForwardProtocol}
	tw := &tunnelWriter{w: w, r: r, header: http.Header{}, closed: make(chan struct{})}
	s.cri.ServeHTTP(tw, inner)
	tw.finish()
}

// tunnelWriter is the ResponseWriter cri-streaming's SPDY upgrade writes to.
type tunnelWriter struct {
	w      http.ResponseWriter
	r      *http.Request
	header http.Header

	upgraded bool
	ws       *websocket.Conn
	served   chan struct{} // closed when the WebSocket server returned
	closed   chan struct{} // closed when the tunnel is closed
	once     sync.Once
}

func (t *tunnelWriter) Header() http.Header { return t.header }

func (t *tunnelWriter) Write(b []byte) (int, error) {
	if t.upgraded {
		return len(b), nil
	}
	return t.w.Write(b)
}

// WriteHeader turns the SPDY upgrade's 101 into the WebSocket upgrade; any other answer
// (an error) goes to the client as it is.
func (t *tunnelWriter) WriteHeader(code int) {
	if code != http.StatusSwitchingProtocols {
		for k, v := range t.header {
			t.w.Header()[k] = v
		}
		t.w.WriteHeader(code)
		return
	}
	ready := make(chan *websocket.Conn, 1)
	t.served = make(chan struct{})
	srv := websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			cfg.Protocol = []string{tunnelPortForwardProtocol}
			return nil
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame
			ready <- ws
			<-t.closed
		},
	}
	go func() {
		defer close(t.served)
		srv.ServeHTTP(t.w, t.r)
	}()
	select {
	case t.ws = <-ready:
		t.upgraded = true
	case <-t.served:
	}
}

// Hijack returns the tunnel as the connection SPDY runs on.
func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if t.ws == nil {
		return nil, nil, errors.New("websocket tunnel: upgrade failed")
	}
	c := &tunnelConn{Conn: t.ws, t: t}
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// finish ends the WebSocket server once the SPDY session is over.
func (t *tunnelWriter) finish() {
	t.once.Do(func() { close(t.closed) })
	if t.served != nil {
		<-t.served
	}
}

// tunnelConn ends the WebSocket handler when SPDY closes the connection.
type tunnelConn struct {
	*websocket.Conn
	t *tunnelWriter
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.t.once.Do(func() { close(c.t.closed) })
	return err
}

func urlPath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("streaming: %w", err)
	}
	return u.Path, nil
}
