package pty

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOpenAndResize(t *testing.T) {
	for _, nonblocking := range []bool{false, true} {
		master, replica, err := Open(nonblocking)
		if err != nil {
			t.Fatal(err)
		}
		if err := Resize(master, 132, 40); err != nil {
			t.Fatal(err)
		}
		ws, err := unix.IoctlGetWinsize(int(replica.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Col != 132 || ws.Row != 40 {
			t.Errorf("nonblocking=%v: replica size %dx%d, want 132x40", nonblocking, ws.Col, ws.Row)
		}
		// What the replica writes, the master reads.
		if _, err := replica.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if n, err := master.Read(buf); err != nil || n != 1 || buf[0] != 'x' {
			t.Errorf("nonblocking=%v: master read %q, %v", nonblocking, buf[:n], err)
		}
		replica.Close()
		master.Close()
		if err := Resize(master, 80, 24); !errors.Is(err, os.ErrClosed) {
			t.Errorf("resize of a closed master: %v, want os.ErrClosed", err)
		}
	}
}

// TestNonblockingMaster checks the terminal an exec gets: what the process writes on the replica
// comes out of the master, a resize lands on the terminal, and closing the master ends a
// read that waits on it (a background process may hold the replica forever).
func TestNonblockingMaster(t *testing.T) {
	master, replica, err := Open(true)
	if err != nil {
		t.Skipf("no terminal here: %v", err)
	}
	defer replica.Close()
	if err := Resize(master, 123, 45); err != nil {
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
	if err := Resize(master, 1, 1); !errors.Is(err, os.ErrClosed) {
		t.Errorf("resize of a closed terminal: %v, want ErrClosed", err)
	}
}
