package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// monitorEnv switches the test binary into the monitor: Launch re-executes it as a real,
// separate process, as the daemon does with its own binary.
const monitorEnv = "CRI_MINI_TEST_MONITOR"

func TestMain(m *testing.M) {
	if os.Getenv(monitorEnv) == "1" {
		// os.Args: [binary, "monitor", flags...]
		os.Exit(Main(os.Args[2:], execSpawner{}))
	}
	os.Exit(m.Run())
}

// startMonitor launches this test binary as a monitor in a fresh directory and returns the
// directory, a client and the monitor's pid.
func startMonitor(t *testing.T, ctx context.Context) (string, *Client, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startMonitorFrom(t, ctx, exe, append(os.Environ(), monitorEnv+"=1"))
}

func startMonitorFrom(t *testing.T, ctx context.Context, exe string, env []string) (string, *Client, int) {
	t.Helper()
	// A short directory: the socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "mon")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pid, err := Launch(ctx, LaunchOptions{
		Exe: exe, PodID: "pod1", Dir: dir, LogFile: filepath.Join(dir, "monitor.log"), Env: env,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever the test did, the monitor must not outlive it.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(dir, "monitor.log"))
			t.Logf("monitor log:\n%s", out)
		}
	})
	c, err := Dial(ctx, SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return dir, c, pid
}

func config(args ...string) json.RawMessage {
	b, _ := json.Marshal(fakeConfig{Args: args})
	return b
}

// logStreams parses a CRI log file and joins each stream's content.
func logStreams(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		f := bytes.SplitN(line, []byte(" "), 4)
		if len(f) != 4 {
			t.Fatalf("malformed record %q", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, string(f[0])); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		content := f[3]
		if string(f[2]) == "P" {
			content = bytes.TrimSuffix(content, []byte("\n"))
		} else if string(f[2]) != "F" {
			t.Fatalf("record %q: tag %q", line, f[2])
		}
		out[string(f[1])] += string(content)
	}
	return out
}

func TestMonitorContainers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, c, _ := startMonitor(t, ctx)
	tests := []struct {
		id     string
		args   []string
		tty    bool
		code   int
		stdout string
		stderr string
	}{
		{"c1", []string{"sh", "-c", "echo hi; echo err >&2; exit 3"}, false, 3, "hi\n", "err\n"},
		{"c2", []string{"sh", "-c", "echo hi; echo err >&2; exit 3"}, false, 3, "hi\n", "err\n"},
		// An orphan reparented to the subreaper monitor keeps stdout open a little longer:
		// its output still reaches the log before the exit is reported.
		{"orphan", []string{"sh", "-c", "(sleep 0.2; echo late) & echo early"}, false, 0, "early\nlate\n", ""},
		{"nonl", []string{"printf", "no newline"}, false, 0, "no newline", ""},
		// With a tty both streams are one terminal, logged as stdout (with the tty's \r\n).
		{"tty", []string{"sh", "-c", "echo out; echo err >&2"}, true, 0, "out\r\nerr\r\n", ""},
	}
	for _, tc := range tests {
		logPath := filepath.Join(dir, tc.id+".log")
		st, err := c.Create(ctx, tc.id, CreateOptions{LogPath: logPath, TTY: tc.tty, Config: config(tc.args...)})
		if err != nil {
			t.Fatalf("create %s: %v", tc.id, err)
		}
		if st.Status != StatusCreated || st.Pid <= 0 {
			t.Fatalf("create %s: state %+v", tc.id, st)
		}
	}
	// Created, not started: nothing ran yet.
	if out := logStreams(t, filepath.Join(dir, "c1.log")); len(out) != 0 {
		t.Fatalf("c1 wrote %v before start", out)
	}
	for _, tc := range tests {
		if _, err := c.Start(ctx, tc.id); err != nil {
			t.Fatalf("start %s: %v", tc.id, err)
		}
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			st, err := c.Wait(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != StatusExited || st.Exit == nil || st.Exit.ExitCode != tc.code || st.Exit.Signal != 0 {
				t.Fatalf("state %+v exit %+v, want exited with %d", st, st.Exit, tc.code)
			}
			rec, err := ReadExit(ContainerDir(dir, tc.id))
			if err != nil {
				t.Fatal(err)
			}
			if rec != *st.Exit {
				t.Errorf("exit record %+v differs from state %+v", rec, *st.Exit)
			}
			got := logStreams(t, filepath.Join(dir, tc.id+".log"))
			if got["stdout"] != tc.stdout || got["stderr"] != tc.stderr {
				t.Errorf("log streams %q, want stdout %q stderr %q", got, tc.stdout, tc.stderr)
			}
		})
	}
	if _, err := c.Start(ctx, "c1"); !errors.Is(err, ErrWrongState) {
		t.Errorf("second start = %v, want ErrWrongState", err)
	}
	if _, err := c.Create(ctx, "c1", CreateOptions{Config: config("true")}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create = %v, want ErrExists", err)
	}
	if _, err := c.Create(ctx, "../x", CreateOptions{Config: config("true")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("create ../x = %v, want ErrInvalid", err)
	}
	if err := c.Remove(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.State(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("state after remove = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(ContainerDir(dir, "c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory after remove: %v", err)
	}
}

// TestMonitorSurvivesDisconnect: the daemon side goes away and comes back; the monitor
// keeps the container, serves its state, signals it, rotates its log and records its kill.
func TestMonitorSurvivesDisconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, c, mpid := startMonitor(t, ctx)
	fifo := filepath.Join(dir, "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "c.log")
	args := []string{"sh", "-c", "echo one; read x < " + fifo + "; echo two; exec sleep 1000"}
	if _, err := c.Create(ctx, "c", CreateOptions{LogPath: logPath, Config: config(args...)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, logPath, "one\n")
	// Drop the connection, as a crashing daemon would, and reconnect.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := Dial(ctx, SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	st, err := c2.State(ctx, "c")
	if err != nil || st.Status != StatusRunning {
		t.Fatalf("state after reconnect: %+v, %v", st, err)
	}
	// Rotate like kubelet: rename, reopen, then the container writes again.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := c2.ReopenLog(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fifo, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, logPath, "two\n")
	if got := logStreams(t, logPath+".1")["stdout"]; got != "one\n" {
		t.Errorf("rotated log holds %q, want %q", got, "one\n")
	}
	if err := c2.Remove(ctx, "c"); !errors.Is(err, ErrWrongState) {
		t.Errorf("remove of a running container = %v, want ErrWrongState", err)
	}
	if _, err := c2.Signal(ctx, "c", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st, err = c2.Wait(ctx, "c")
	if err != nil || st.Exit == nil || st.Exit.ExitCode != 137 || st.Exit.Signal != 9 {
		t.Fatalf("after SIGKILL: %+v exit %+v, %v; want 137, signal 9", st, st.Exit, err)
	}
	if _, err := c2.Signal(ctx, "c", syscall.SIGTERM); err != nil {
		t.Errorf("signal to an exited container = %v, want no error", err)
	}
	if err := c2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitGone(t, mpid)
	if _, err := os.Stat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after shutdown: %v", err)
	}
	// The record outlives the monitor: it is what a restarted daemon reads.
	if rec, err := ReadExit(ContainerDir(dir, "c")); err != nil || rec.ExitCode != 137 {
		t.Errorf("exit record after shutdown: %+v, %v", rec, err)
	}
}

func waitForLog(t *testing.T, path, want string) {
	t.Helper()
	for range 500 {
		if _, err := os.Stat(path); err == nil && strings.Contains(logStreams(t, path)["stdout"], want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never contained %q", path, want)
}

// waitGone waits until pid no longer exists (Launch's goroutine reaps it).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for range 500 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("monitor %d still exists after shutdown", pid)
}

// failingPlacer records the pid it was asked to move and refuses.
type failingPlacer struct{ pid int }

func (f *failingPlacer) AddProcess(_ string, pid int) error {
	f.pid = pid
	return errors.New("cgroup refused")
}

func TestLaunchFailures(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), monitorEnv+"=1")
	long := "/" + strings.Repeat("d", 110)
	tests := []struct {
		name   string
		opts   LaunchOptions
		placer *failingPlacer
		want   string
	}{
		{"no pod id", LaunchOptions{Exe: exe, Env: env}, nil, "required"},
		{"cgroup placement fails", LaunchOptions{Exe: exe, Env: env, PodID: "p", Cgroup: "/x"}, &failingPlacer{}, "cgroup refused"},
		{"monitor refuses to start", LaunchOptions{Exe: exe, Env: env, PodID: "p"}, nil, "longer than 107 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if tc.opts.PodID != "" {
				base, err := os.MkdirTemp("", "mon")
				if err != nil {
					t.Fatal(err)
				}
				defer os.RemoveAll(base)
				tc.opts.Dir = base
				if tc.name == "monitor refuses to start" {
					tc.opts.Dir = filepath.Join(base, long)
				}
			}
			if tc.placer != nil {
				tc.opts.Cgroups = tc.placer
			}
			_, err := Launch(ctx, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Launch = %v, want an error containing %q", err, tc.want)
			}
			if tc.placer != nil {
				// The monitor that could not be placed was killed and reaped.
				if err := syscall.Kill(tc.placer.pid, 0); !errors.Is(err, syscall.ESRCH) {
					t.Errorf("monitor %d still exists after a failed launch: %v", tc.placer.pid, err)
				}
			}
		})
	}
}
