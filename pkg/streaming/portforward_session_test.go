package streaming

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// hostPods has one ready pod on the host network.
type hostPods struct{}

func (hostPods) Get(id string) (*sandbox.Sandbox, error) {
	if id != "pod1" {
		return nil, store.ErrNotFound
	}
	return &sandbox.Sandbox{ID: "pod1", State: sandbox.StateReady}, nil
}

// echoServer answers each connection with what it sent, once the client half-closed.
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				_, _ = c.Write(b)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPortForwardSessionOutlivesAClosedPort opens a SPDY port-forward session: a port
// nobody listens on fails on its own error stream, and the same session then forwards
// another port.
func TestPortForwardSessionOutlivesAClosedPort(t *testing.T) {
	s := startTest(t, Options{Sandboxes: hostPods{}})
	open := echoServer(t)
	resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "pod1"})
	if err != nil {
		t.Fatal(err)
	}
	// A port that was free a moment ago: nothing answers there.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()

	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, resp.Url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Stream-Protocol-Version", spdyPortForwardProtocol)
	hr, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rt.NewConnection(hr)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer conn.Close()
	// The data stream's creation may see the server's reset of a failed port before its
	// reply: the error is returned, the error stream still carries the reason.
	streams := func(port, id int) (errS, data httpstream.Stream, dataErr error) {
		h := http.Header{}
		h.Set("streamType", "error")
		h.Set("port", strconv.Itoa(port))
		h.Set("requestID", strconv.Itoa(id))
		errS, err := conn.CreateStream(h)
		if err != nil {
			t.Fatal(err)
		}
		_ = errS.Close() // the client never writes on its error stream
		h.Set("streamType", "data")
		data, err = conn.CreateStream(h)
		return errS, data, err
	}
	errS, _, _ := streams(closed, 1)
	msg := make(chan string, 1)
	go func() { b, _ := io.ReadAll(errS); msg <- string(b) }()
	select {
	case m := <-msg:
		if !strings.Contains(m, "connection refused") {
			t.Errorf("error stream of the closed port: %q, want connection refused", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no error on the closed port's error stream")
	}
	_, data, err := streams(open, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(data, "ping"); err != nil {
		t.Fatal(err)
	}
	_ = data.Close()
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(data); got <- string(b) }()
	select {
	case g := <-got:
		if g != "ping" {
			t.Errorf("echo through the same session: %q, want ping", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer through the session after the failed port")
	}
}
