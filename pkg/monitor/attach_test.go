package monitor

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while a copier writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// attached is a client attached in a test, copying its output in the background.
type attached struct {
	as             *AttachStream
	stdout, stderr syncBuffer
	done           chan error // CopyOutput's result
}

func attach(t *testing.T, ctx context.Context, c *Client, id string, stdin bool) *attached {
	t.Helper()
	as, err := c.Attach(ctx, id, stdin)
	if err != nil {
		t.Fatalf("attach %s: %v", id, err)
	}
	t.Cleanup(func() { _ = as.Close() })
	a := &attached{as: as, done: make(chan error, 1)}
	go func() { a.done <- as.CopyOutput(&a.stdout, &a.stderr) }()
	return a
}

// result waits for the end of the client's output.
func (a *attached) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-a.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("attached output did not end")
		return nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestAttachFanOut: two clients see both output streams; only the one attached with stdin
// feeds the container; one detaching neither kills the container nor disturbs the other.
func TestAttachFanOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, c, _ := startMonitor(t, ctx)
	logPath := filepath.Join(dir, "c.log")
	script := `while read -r l; do [ "$l" = quit ] && exit 4; echo "o:$l"; echo "e:$l" >&2; done`
	if _, err := c.Create(ctx, "c", CreateOptions{LogPath: logPath, Stdin: true,
		Config: config("sh", "-c", script)}); err != nil {
		t.Fatal(err)
	}
	a := attach(t, ctx, c, "c", true)
	b := attach(t, ctx, c, "c", false)
	if _, err := c.Start(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := a.as.WriteStdin([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	// b was attached without stdin: what it sends is dropped.
	if err := b.as.WriteStdin([]byte("quit\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both clients to see one", func() bool {
		return b.stdout.String() == "o:one\n" && b.stderr.String() == "e:one\n" &&
			a.stdout.String() == "o:one\n" && a.stderr.String() == "e:one\n"
	})
	if err := b.as.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.result(t); err == nil {
		t.Error("a closed client's output ended without an error")
	}
	if err := a.as.WriteStdin([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to see two", func() bool { return a.stdout.String() == "o:one\no:two\n" })
	if st, err := c.State(ctx, "c"); err != nil || st.Status != StatusRunning {
		t.Fatalf("after a client detached: %+v, %v", st, err)
	}
	if err := a.as.WriteStdin([]byte("quit\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.result(t); err != nil {
		t.Fatalf("output of a: %v", err)
	}
	st, err := c.Wait(ctx, "c")
	if err != nil || st.Exit == nil || st.Exit.ExitCode != 4 {
		t.Fatalf("exit %+v, %v; want code 4", st.Exit, err)
	}
	got := logStreams(t, logPath)
	if got["stdout"] != "o:one\no:two\n" || got["stderr"] != "e:one\ne:two\n" {
		t.Errorf("log %q", got)
	}
}

// TestAttachStdinOnce: with stdin_once the end of an attached stdin is the container's EOF;
// without it the container keeps its stdin for the next client.
func TestAttachStdinOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c, _ := startMonitor(t, ctx)
	for _, tc := range []struct {
		id   string
		once bool
	}{
		{"once", true},
		{"open", false},
	} {
		t.Run(tc.id, func(t *testing.T) {
			if _, err := c.Create(ctx, tc.id, CreateOptions{Stdin: true, StdinOnce: tc.once,
				// Builtins only: a killed shell leaves no child holding the output open.
				Config: config("sh", "-c", `while read -r l; do echo "$l"; done; echo eof`)}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Start(ctx, tc.id); err != nil {
				t.Fatal(err)
			}
			a := attach(t, ctx, c, tc.id, true)
			if err := a.as.WriteStdin([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "echo of hello", func() bool { return a.stdout.String() == "hello\n" })
			if err := a.as.CloseStdin(); err != nil {
				t.Fatal(err)
			}
			if tc.once {
				if err := a.result(t); err != nil {
					t.Fatalf("output: %v", err)
				}
				if got := a.stdout.String(); got != "hello\neof\n" {
					t.Errorf("output %q, want the echo then eof", got)
				}
				return
			}
			time.Sleep(300 * time.Millisecond)
			if st, err := c.State(ctx, tc.id); err != nil || st.Status != StatusRunning {
				t.Fatalf("without stdin_once, after the client's stdin ended: %+v, %v", st, err)
			}
			// The client's stdin ended: more from it is dropped, another client's is not.
			if err := a.as.WriteStdin([]byte("dropped\n")); err != nil {
				t.Fatal(err)
			}
			a2 := attach(t, ctx, c, tc.id, true)
			if err := a2.as.WriteStdin([]byte("again\n")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "echo of again", func() bool { return a2.stdout.String() == "again\n" })
			// Each client has its own queue and writer: the first may lag behind the second.
			waitFor(t, "the first client to see again", func() bool { return a.stdout.String() == "hello\nagain\n" })
			if _, err := c.Signal(ctx, tc.id, 9); err != nil {
				t.Fatal(err)
			}
			if err := a2.result(t); err != nil {
				t.Errorf("output after kill: %v", err)
			}
		})
	}
}

// TestAttachSlowClientDropped: a client that never reads is dropped once its backlog
// overflows, while the container, its log and a reading client go on.
func TestAttachSlowClientDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, c, _ := startMonitor(t, ctx)
	logPath := filepath.Join(dir, "c.log")
	const chunks, chunk = 48, 64 << 10
	// Paced so that a reading client keeps up even on a loaded machine.
	script := `i=0; while [ $i -lt 48 ]; do head -c 65536 /dev/zero | tr '\0' x; i=$((i+1)); sleep 0.01; done`
	if _, err := c.Create(ctx, "c", CreateOptions{LogPath: logPath, Config: config("sh", "-c", script)}); err != nil {
		t.Fatal(err)
	}
	slow, err := c.Attach(ctx, "c", false)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast := attach(t, ctx, c, "c", false)
	if _, err := c.Start(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx, "c")
	if err != nil || st.Exit == nil || st.Exit.ExitCode != 0 {
		t.Fatalf("the container did not finish despite a stuck client: %+v, %v", st.Exit, err)
	}
	if err := fast.result(t); err != nil {
		t.Fatalf("reading client: %v", err)
	}
	if n := len(fast.stdout.String()); n != chunks*chunk {
		t.Errorf("reading client got %d bytes, want %d", n, chunks*chunk)
	}
	if n := len(logStreams(t, logPath)["stdout"]); n != chunks*chunk {
		t.Errorf("log holds %d bytes, want %d", n, chunks*chunk)
	}
	var sink countWriter
	if err := slow.CopyOutput(&sink, nil); err == nil {
		t.Errorf("the stuck client got the whole output (%d bytes), want it dropped", sink.n)
	} else if sink.n >= chunks*chunk {
		t.Errorf("dropped client still got %d bytes", sink.n)
	}
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// TestAttachResize: a resize reaches the terminal before the stdin sent after it.
func TestAttachResize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c, _ := startMonitor(t, ctx)
	for _, tc := range []struct {
		id            string
		width, height uint16
	}{
		{"small", 40, 12},
		{"large", 211, 63},
	} {
		t.Run(tc.id, func(t *testing.T) {
			if _, err := c.Create(ctx, tc.id, CreateOptions{TTY: true, Stdin: true,
				Config: config("sh", "-c", "read -r x; stty size")}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Start(ctx, tc.id); err != nil {
				t.Fatal(err)
			}
			a := attach(t, ctx, c, tc.id, true)
			if err := a.as.Resize(tc.width, tc.height); err != nil {
				t.Fatal(err)
			}
			if err := a.as.WriteStdin([]byte("go\n")); err != nil {
				t.Fatal(err)
			}
			if err := a.result(t); err != nil {
				t.Fatalf("output: %v", err)
			}
			want := strconv.Itoa(int(tc.height)) + " " + strconv.Itoa(int(tc.width))
			if got := a.stdout.String(); !strings.Contains(got, want+"\r\n") {
				t.Errorf("terminal output %q, want size %q", got, want)
			}
			if a.stderr.String() != "" {
				t.Errorf("a terminal wrote stderr frames: %q", a.stderr.String())
			}
		})
	}
}

// TestAttachEnded: attaching to an exited container ends at once; to an unknown one fails.
func TestAttachEnded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c, _ := startMonitor(t, ctx)
	if _, err := c.Create(ctx, "c", CreateOptions{Config: config("true")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a := attach(t, ctx, c, "c", true)
	if err := a.result(t); err != nil {
		t.Fatalf("attach to an exited container: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("attach to an exited container took %v", d)
	}
	if a.as.State.Status != StatusExited {
		t.Errorf("attach state %+v", a.as.State)
	}
	if _, err := c.Attach(ctx, "nope", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("attach to an unknown container = %v, want ErrNotFound", err)
	}
	// The monitor still serves requests after all this.
	if _, err := c.State(ctx, "c"); err != nil {
		t.Fatal(err)
	}
}

// slowWriter takes output at a bounded pace, like a client on a slow link.
type slowWriter struct{ n int }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	w.n += len(p)
	return len(p), nil
}

// TestAttachSlowClientThrottles: a client that reads slower than the container writes, but
// keeps reading, slows the container down instead of being dropped, and gets everything.
func TestAttachSlowClientThrottles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, c, _ := startMonitor(t, ctx)
	logPath := filepath.Join(dir, "c.log")
	const total = 4 << 20 // four times the backlog a client may have
	if _, err := c.Create(ctx, "c", CreateOptions{LogPath: logPath, Config: config("sh", "-c", "head -c 4194304 /dev/zero | tr '\\0' x")}); err != nil {
		t.Fatal(err)
	}
	slow, err := c.Attach(ctx, "c", false)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := c.Start(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	var sink slowWriter
	if err := slow.CopyOutput(&sink, nil); err != nil {
		t.Fatalf("slow client: %v after %d bytes", err, sink.n)
	}
	if sink.n != total {
		t.Errorf("slow client got %d bytes, want %d", sink.n, total)
	}
	if _, err := c.Wait(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if n := len(logStreams(t, logPath)["stdout"]); n != total {
		t.Errorf("log holds %d bytes, want %d", n, total)
	}
}
