package streaming

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// fakeStream is the client's side of a port-forward stream: it reads what the client
// sends from a pipe and keeps what the pod answers.
type fakeStream struct {
	r      *io.PipeReader
	mu     sync.Mutex
	got    bytes.Buffer
	closed bool
}

func (s *fakeStream) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *fakeStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Write(p)
}

// Close ends the write side, as the client then resets the stream, its reads end too.
func (s *fakeStream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.r.Close()
}

// podServer accepts one connection on 127.0.0.1 and runs serve on it.
func podServer(t *testing.T, serve func(c *net.TCPConn)) *net.TCPConn {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c.(*net.TCPConn))
	}()
	port := l.Addr().(*net.TCPAddr).Port
	c, err := dialPod(context.Background(), "", int32(port))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func TestForward(t *testing.T) {
	for _, tc := range []struct {
		name    string
		serve   func(c *net.TCPConn)
		send    string
		closeIn bool // the client ends its sending
		idle    time.Duration
		want    string
		wantErr bool
	}{
		{name: "half-close answered in full", send: "ping", closeIn: true, want: "echo:ping",
			serve: func(c *net.TCPConn) {
				b, _ := io.ReadAll(c)
				time.Sleep(100 * time.Millisecond) // the answer comes well after the client's FIN
				_, _ = c.Write(append([]byte("echo:"), b...))
			}},
		{name: "pod closes first", want: "bye",
			serve: func(c *net.TCPConn) { _, _ = c.Write([]byte("bye")) }},
		{name: "silent pod after the client's end", send: "x", closeIn: true, idle: 200 * time.Millisecond, wantErr: true,
			serve: func(c *net.TCPConn) { time.Sleep(5 * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := podServer(t, tc.serve)
			defer conn.Close()
			pr, pw := io.Pipe()
			s := &fakeStream{r: pr}
			go func() {
				_, _ = io.WriteString(pw, tc.send)
				if tc.closeIn {
					_ = pw.Close()
				}
			}()
			done := make(chan error, 1)
			go func() { done <- forward(conn, s, tc.idle) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(4 * time.Second):
				t.Fatal("forward did not end")
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("forward: %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("forward: %v, want a deadline error", err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.got.String() != tc.want || !s.closed {
				t.Errorf("client got %q (stream closed %v), want %q and a closed stream", s.got.String(), s.closed, tc.want)
			}
		})
	}
}

func TestDialPodRefused(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if _, err := dialPod(context.Background(), "", int32(port)); err == nil {
		t.Fatalf("dial of closed port %d succeeded", port)
	}
}

func TestWatchedConnEndsItsContext(t *testing.T) {
	for _, tc := range []struct {
		name  string
		act   func(client net.Conn, server *watchedConn)
		ended bool
	}{
		{"client closes", func(c net.Conn, s *watchedConn) { c.Close(); _, _ = s.Read(make([]byte, 1)) }, true},
		{"server closes", func(c net.Conn, s *watchedConn) { s.Close() }, true},
		{"read deadline", func(c net.Conn, s *watchedConn) {
			_ = s.SetReadDeadline(time.Now().Add(-time.Second))
			_, _ = s.Read(make([]byte, 1))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := newConnSet()
			client, server := net.Pipe()
			defer client.Close()
			w := &watchedConn{Conn: server, cs: cs}
			cs.conns[w] = struct{}{}
			ctx := cs.connContext(context.Background(), w)
			tc.act(client, w)
			if got := ctx.Err() != nil; got != tc.ended {
				t.Errorf("context ended %v, want %v", got, tc.ended)
			}
			w.Close()
			if len(cs.conns) != 0 {
				t.Errorf("closed connection still tracked")
			}
		})
	}
}
