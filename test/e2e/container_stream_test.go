package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crictlPath is the crictl that hack/build-cri-tools.sh builds; the streaming tests use
// it as the client (SPDY and WebSocket, as kubectl).
func crictlPath(t *testing.T) string {
	t.Helper()
	return outputBin(t, "crictl", "hack/build-cri-tools.sh")
}

// outputBin is _output/bin/name, which script builds; the test is skipped without it.
func outputBin(t *testing.T, name, script string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "_output", "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no %s at %s (%s builds it): %v", name, p, script, err)
	}
	return p
}

// crictlFlags point crictl at the daemon of e through a config file of its own (without
// one crictl warns on stderr, which the tests compare).
func (e *podEnv) crictlFlags(t *testing.T) []string {
	t.Helper()
	p := filepath.Join(e.dirs.base, "crictl.yaml")
	if err := os.WriteFile(p, []byte("runtime-endpoint: unix://"+e.dirs.socket+"\nimage-endpoint: unix://"+e.dirs.socket+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--config", p}
}

// TestContainerExecStream runs exec sessions through crictl over SPDY and WebSocket:
// output streams, exit codes and stdin.
func TestContainerExecStream(t *testing.T) {
	bin := crictlPath(t)
	e := newPodEnv(t, "exec-stream-pod")
	id := e.run(t, "exec-target", "exec sleep 3600", "exec-target.log")
	for _, transport := range []string{"spdy", "websocket"} {
		for _, tc := range []struct {
			name           string
			args           []string
			stdin          string
			stdout, stderr string
			code           string // "" for success, else the exit code crictl reports
		}{
			{name: "output", args: []string{"sh", "-c", "echo out; echo err >&2"}, stdout: "out\n", stderr: "err\n"},
			{name: "exit code", args: []string{"sh", "-c", "exit 3"}, code: "3"},
			{name: "killed", args: []string{"sh", "-c", "kill -9 $$"}, code: "137"},
			{name: "no such command", args: []string{"/nonexistent"}, code: "internal"},
			{name: "stdin", args: []string{"-i", "sh", "-c", "cat; echo end"}, stdin: "abc\n", stdout: "abc\nend\n"},
		} {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				args := []string{"exec", "--transport", transport}
				cmdArgs := tc.args
				if cmdArgs[0] == "-i" {
					args, cmdArgs = append(args, "-i"), cmdArgs[1:]
				}
				args = append(append(args, id), cmdArgs...)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append(e.crictlFlags(t), args...)...)
				cmd.Stdin = strings.NewReader(tc.stdin)
				var o, eb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &o, &eb
				err := cmd.Run()
				switch {
				case tc.code == "":
					if err != nil || o.String() != tc.stdout || eb.String() != tc.stderr {
						t.Errorf("crictl %v: %v; stdout %q stderr %q, want %q %q", args, err, o.String(), eb.String(), tc.stdout, tc.stderr)
					}
				case tc.code == "internal":
					if err == nil {
						t.Errorf("crictl %v succeeded, want a failure", args)
					}
				default:
					if err == nil || !strings.Contains(eb.String(), "exit code "+tc.code) {
						t.Errorf("crictl %v: %v, stderr %q; want a failure naming exit code %s", args, err, eb.String(), tc.code)
					}
				}
			})
		}
	}
}

// openTerminal allocates a pty pair for a client process.
func openTerminal(t *testing.T, rows, cols uint16) (master, replica *os.File) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	replica, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	return master, replica
}

// TestContainerExecTTY runs `crictl exec -it` on a terminal of the test's: the exec'd
// process sees the terminal's size and its changes, and is killed when the client goes.
func TestContainerExecTTY(t *testing.T) {
	bin := crictlPath(t)
	e := newPodEnv(t, "exec-tty-pod")
	id := e.run(t, "tty-target", "exec sleep 3600", "tty-target.log")
	e.crictlFlags(t)
	for _, transport := range []string{"spdy", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			master, replica := openTerminal(t, 24, 80)
			defer master.Close()
			marker := "tty-marker-" + transport
			script := "while :; do echo size=$(stty size) " + marker + "; sleep 0.2; done"
			cmd := exec.Command(bin, "--config", filepath.Join(e.dirs.base, "crictl.yaml"), "exec", "--transport", transport, "-it", id, "sh", "-c", script)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = replica, replica, replica
			// crictl owns the terminal: it gets SIGWINCH when the size changes.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			replica.Close()
			var out syncBuffer
			copied := make(chan struct{})
			go func() { _, _ = io.Copy(&out, master); close(copied) }()
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}()
			waitOutput(t, &out, "size=24 80", 20*time.Second)
			if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
				t.Fatal(err)
			}
			waitOutput(t, &out, "size=33 111", 20*time.Second)
			// The client goes away: the session's process must be killed.
			cmdline := "sh\x00-c\x00" + script + "\x00"
			// (Its subshells for $(stty size) share the command line: at least one.)
			if len(processesWithCmdline(cmdline)) == 0 {
				t.Fatal("no exec'd process found while the session runs")
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			deadline := time.Now().Add(15 * time.Second)
			for len(processesWithCmdline(cmdline)) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("exec'd process %v still runs after its client was killed", processesWithCmdline(cmdline))
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// waitOutput waits (bounded) for want to appear in b.
func waitOutput(t *testing.T, b *syncBuffer, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within %v: %q", want, timeout, truncate([]byte(b.String())))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestContainerAttachTwoClients attaches two crictl clients to one container: the input of
// one reaches the container, whose output reaches both.
func TestContainerAttachTwoClients(t *testing.T) {
	bin := crictlPath(t)
	e := newPodEnv(t, "attach-two-pod")
	id := e.runConfig(t, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "attach-target"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", `while read -r l; do echo "got:$l"; done`},
		LogPath:  "attach-target.log",
		Stdin:    true,
	})
	var outs [2]syncBuffer
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	for i, transport := range []string{"spdy", "websocket"} {
		args := append(e.crictlFlags(t), "attach", "--transport", transport)
		cmd := exec.Command(bin, args...)
		if i == 0 {
			cmd.Args = append(cmd.Args, "-i")
			cmd.Stdin = stdinR
		}
		cmd.Args = append(cmd.Args, id)
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	// Both clients must be attached before the line goes in: send until both saw one.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; !strings.Contains(outs[0].String(), "got:") || !strings.Contains(outs[1].String(), "got:"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("attached outputs %q and %q, want got: lines in both", outs[0].String(), outs[1].String())
		}
		if _, err := fmt.Fprintf(stdinW, "line%d\n", i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := io.WriteString(stdinW, "last\n"); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &outs[0], "got:last", 10*time.Second)
	waitOutput(t, &outs[1], "got:last", 10*time.Second)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPortForward forwards ports of a pod through crictl: many sequential and concurrent
// HTTP requests, a half-closed echo, and a closed port that fails alone.
func TestPortForward(t *testing.T) {
	bin := crictlPath(t)
	e := newPodEnv(t, "port-forward-pod")
	e.crictlFlags(t)
	e.run(t, "servers", `echo hello-from-pod > /tmp/index.html; httpd -p 8080 -h /tmp; nc -ll -p 8081 -e cat & exec sleep 3600`, "servers.log")
	for _, transport := range []string{"spdy", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			httpPort, echoPort, closedPort := freePort(t), freePort(t), freePort(t)
			var out syncBuffer
			cmd := exec.Command(bin, "--config", filepath.Join(e.dirs.base, "crictl.yaml"), "port-forward", "--transport", transport, e.podID,
				fmt.Sprintf("%d:8080", httpPort), fmt.Sprintf("%d:8081", echoPort), fmt.Sprintf("%d:9", closedPort))
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}()
			waitOutput(t, &out, fmt.Sprintf("127.0.0.1:%d -> 9", closedPort), 20*time.Second)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			url := fmt.Sprintf("http://127.0.0.1:%d/index.html", httpPort)
			get := func() error {
				resp, err := client.Get(url)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil || string(b) != "hello-from-pod\n" {
					return fmt.Errorf("body %q, %v", b, err)
				}
				return nil
			}
			start := time.Now()
			for i := range 100 {
				if err := get(); err != nil {
					t.Fatalf("sequential request %d: %v\n%s", i, err, out.String())
				}
			}
			t.Logf("100 sequential requests in %v", time.Since(start))
			var wg sync.WaitGroup
			errs := make(chan error, 10)
			for range 10 {
				wg.Add(1)
				go func() { defer wg.Done(); errs <- get() }()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("concurrent request: %v", err)
				}
			}
			// Half-close: the pod's cat sees EOF after our data and answers it in full.
			c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", echoPort))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "ping\n"); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			b, err := io.ReadAll(bufio.NewReader(c))
			c.Close()
			if err != nil || string(b) != "ping\n" {
				t.Errorf("echo through a half-closed forward: %q, %v; want %q", b, err, "ping\n")
			}
			// Nothing listens on port 9 in the pod: the refusal reaches the client on that
			// port's error stream (client-go then ends the whole session by choice).
			if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", closedPort)); err == nil {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if n, _ := c.Read(make([]byte, 1)); n != 0 {
					t.Errorf("read %d bytes from a closed pod port", n)
				}
				c.Close()
			}
			waitOutput(t, &out, "port 9: dial tcp4 127.0.0.1:9: connect: connection refused", 10*time.Second)
		})
	}
}
