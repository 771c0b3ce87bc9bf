package container

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// failingWriter is a client that stopped taking output.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

// erroringReader returns data, then a read error of its own.
type erroringReader struct {
	data string
	err  error
	done bool
}

func (r *erroringReader) Read(p []byte) (int, error) {
	if !r.done {
		r.done = true
		return copy(p, r.data), nil
	}
	return 0, r.err
}

func TestCopyToClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dst      io.Writer
		src      io.Reader
		wantGone bool
	}{
		{"output ends", io.Discard, strings.NewReader("abc"), false},
		{"terminal closed (EIO)", io.Discard, &erroringReader{data: "x", err: unix.EIO}, false},
		{"client gone", failingWriter{}, strings.NewReader("abc"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			copyToClient(tc.dst, tc.src, cancel)
			if gone := ctx.Err() != nil; gone != tc.wantGone {
				t.Errorf("client gone %v, want %v", gone, tc.wantGone)
			}
		})
	}
}

// TestTerminal checks the terminal an exec gets: what the process writes on the replica
// comes out of the master, a resize lands on the terminal, and closing the master ends a
// read that waits on it (a background process may hold the replica forever).
func TestTerminal(t *testing.T) {
	master, replica, err := openPTY()
	if err != nil {
		t.Skipf("no terminal here: %v", err)
	}
	defer replica.Close()
	if err := setWinsize(master, TermSize{Width: 123, Height: 45}); err != nil {
		t.Fatal(err)
	}
	ws, err := unix.IoctlGetWinsize(int(replica.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Col != 123 || ws.Row != 45 {
		t.Errorf("terminal size %dx%d, want 123x45", ws.Col, ws.Row)
	}
	if _, err := replica.WriteString("hi\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := master.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "hi") {
		t.Fatalf("read %q, %v from the master; want hi", buf[:n], err)
	}
	done := make(chan error, 1)
	go func() { _, err := master.Read(buf); done <- err }()
	time.Sleep(50 * time.Millisecond)
	_ = master.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("pending read ended with %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the master did not end a pending read")
	}
	if err := setWinsize(master, TermSize{Width: 1, Height: 1}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("resize of a closed terminal: %v, want ErrClosed", err)
	}
}
