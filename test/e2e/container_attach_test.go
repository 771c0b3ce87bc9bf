package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/monitor"
)

// TestContainerAttachThroughMonitor attaches to real containers on their pod monitor's
// socket, as the daemon's Attach does: a terminal that takes input and a resize, and piped
// stdin with stdin_once, whose end is the container's EOF.
func TestContainerAttachThroughMonitor(t *testing.T) {
	e := newPodEnv(t, "attach-pod")
	socks, err := filepath.Glob(filepath.Join(e.dirs.state, "mon", "*", monitor.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		tty, once  bool
		script     string
		resize     bool
		input      string
		want       []string // pieces of the attached output
		wantLog    string   // a full stdout line of the log
		wantExit   int32
		closeStdin bool
	}{
		{name: "tty", tty: true, script: `read -r l; echo "got:$l"; stty size`, resize: true, input: "hi\n",
			want: []string{"got:hi\r\n", "30 100\r\n"}, wantLog: "got:hi"},
		{name: "stdin-once", once: true, script: `cat; echo done`, input: "abc\n", closeStdin: true,
			want: []string{"abc\ndone\n"}, wantLog: "done"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			logPath := tc.name + "/0.log"
			id := e.runConfig(t, &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: tc.name},
				Image:    &runtimeapi.ImageSpec{Image: "busybox"},
				Command:  []string{"sh", "-c", tc.script},
				LogPath:  logPath,
				Tty:      tc.tty, Stdin: true, StdinOnce: tc.once,
			})
			if len(socks) == 0 {
				socks, _ = filepath.Glob(filepath.Join(e.dirs.state, "mon", "*", monitor.SocketName))
			}
			if len(socks) != 1 {
				t.Fatalf("monitor sockets %v, want one", socks)
			}
			as, err := monitor.DialAttach(ctx, socks[0], id, true)
			if err != nil {
				t.Fatal(err)
			}
			defer as.Close()
			var stdout, stderr bytes.Buffer
			done := make(chan error, 1)
			go func() { done <- as.CopyOutput(&stdout, &stderr) }()
			if tc.resize {
				if err := as.Resize(100, 30); err != nil {
					t.Fatal(err)
				}
			}
			if err := as.WriteStdin([]byte(tc.input)); err != nil {
				t.Fatal(err)
			}
			if tc.closeStdin {
				if err := as.CloseStdin(); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("attached output: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("the attached output did not end")
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("attached stdout %q lacks %q", stdout.String(), w)
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("attached stderr %q", stderr.String())
			}
			st := waitExited(t, e.c, id)
			if st.Status.ExitCode != tc.wantExit {
				t.Errorf("exit code %d, want %d", st.Status.ExitCode, tc.wantExit)
			}
			waitLogLine(t, filepath.Join(e.logDir, logPath), "stdout", "F", tc.wantLog)
		})
	}
}
