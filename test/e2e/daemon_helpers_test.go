package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// daemonDirs are the per-test directories a daemon runs in.
type daemonDirs struct {
	base, socket, root, state, cniConf string
}

func newDaemonDirs(t *testing.T) daemonDirs {
	t.Helper()
	// Short base path: the socket path must fit in sun_path.
	base, err := os.MkdirTemp("", "crm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// As /var/lib is: the root of a pod's user namespace must pass through to its rootfs.
	if err := os.Chmod(base, 0o711); err != nil {
		t.Fatal(err)
	}
	d := daemonDirs{
		base:    base,
		socket:  filepath.Join(base, "c.sock"),
		root:    filepath.Join(base, "root"),
		state:   filepath.Join(base, "state"),
		cniConf: filepath.Join(base, "net.d"),
	}
	if err := os.MkdirAll(d.cniConf, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// writeConfig writes a config file that keeps the daemon inside the test's directories.
func (d daemonDirs) writeConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(d.base, "config.toml")
	data := "listen = \"" + d.socket + "\"\nroot = \"" + d.root + "\"\nstate = \"" + d.state + "\"\n" +
		"[cni]\nconf_dir = \"" + d.cniConf + "\"\n" + extra
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer collects a process's output safely while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type daemon struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan error
}

// startDaemon starts cri-mini with args, waits until its socket answers Version, and stops
// it when the test ends.
func startDaemon(t *testing.T, socket string, args ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, socket, args...)
	t.Cleanup(func() { d.stop(t) })
	return d
}

// launchDaemon is startDaemon for a test that orders the daemon's stop among its own
// cleanups: nothing stops it at the test's end, except a failure to serve.
func launchDaemon(t *testing.T, socket string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(binary, args...), output: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd.Stdout, d.cmd.Stderr = d.output, d.output
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			c := client(t, socket)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.Version(ctx, &runtimeapi.VersionRequest{})
			cancel()
			if err == nil {
				return d
			}
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("daemon exited before serving: %v\n%s", err, d.output.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = d.cmd.Process.Kill()
			d.done <- <-d.done
			t.Fatalf("daemon did not serve on %s within 20s\n%s", socket, d.output.String())
		}
	}
}

// stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 15 s).
func (d *daemon) stop(t *testing.T) error {
	select {
	case err := <-d.done:
		d.done <- err
		return err
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		err := <-d.done
		d.done <- err
		t.Errorf("daemon ignored SIGTERM for 15s\n%s", d.output.String())
		return err
	}
}

func client(t *testing.T, socket string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}
