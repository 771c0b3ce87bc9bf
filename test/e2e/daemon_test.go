package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestDaemonServesRuntimeInfo(t *testing.T) {
	dirs := newDaemonDirs(t)
	startDaemon(t, dirs.socket, "--config", dirs.writeConfig(t, ""))
	c := client(t, dirs.socket)
	ctx := context.Background()

	v, err := c.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "cri-mini" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion == "" {
		t.Fatalf("version = %+v", v)
	}

	st, err := os.Stat(dirs.socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v, want socket 0660", st.Mode())
	}

	// The conf dir is empty: the network is not ready, and says why.
	s, err := c.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range s.Status.Conditions {
		switch cond.Type {
		case runtimeapi.RuntimeReady:
			if !cond.Status {
				t.Errorf("RuntimeReady false: %+v", cond)
			}
		case runtimeapi.NetworkReady:
			if cond.Status || cond.Message == "" {
				t.Errorf("NetworkReady with an empty CNI conf dir: %+v", cond)
			}
		}
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(s.Info["config"]), &cfg); err != nil {
		t.Fatalf("verbose config: %v", err)
	}
	if cfg["stateDir"] != dirs.state || cfg["rootDir"] != dirs.root {
		t.Fatalf("verbose config has stateDir %v rootDir %v, want %s %s", cfg["stateDir"], cfg["rootDir"], dirs.state, dirs.root)
	}

	rc, err := c.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("cgroup driver = %v", rc.GetLinux().GetCgroupDriver())
	}
}

func TestSecondDaemonOnSameSocketFails(t *testing.T) {
	dirs := newDaemonDirs(t)
	first := startDaemon(t, dirs.socket, "--config", dirs.writeConfig(t, ""))

	// Same socket, different root and state: it must refuse before touching anything.
	second := exec.Command(binary, "--listen", dirs.socket, "--root", dirs.base+"/root2", "--state", dirs.base+"/state2")
	out, err := second.CombinedOutput()
	if err == nil {
		t.Fatalf("second daemon started:\n%s", out)
	}
	if !strings.Contains(string(out), "already serving "+dirs.socket) {
		t.Fatalf("second daemon's message does not say the socket is in use:\n%s", out)
	}
	if _, err := os.Stat(dirs.base + "/root2"); !os.IsNotExist(err) {
		t.Fatalf("second daemon created its root dir: %v", err)
	}
	if _, err := client(t, dirs.socket).Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("first daemon stopped serving: %v\n%s", err, first.output.String())
	}
}

func TestSIGTERMRemovesSocket(t *testing.T) {
	dirs := newDaemonDirs(t)
	d := startDaemon(t, dirs.socket, "--config", dirs.writeConfig(t, ""))
	if err := d.stop(t); err != nil {
		t.Fatalf("daemon exited with %v after SIGTERM\n%s", err, d.output.String())
	}
	if _, err := os.Lstat(dirs.socket); !os.IsNotExist(err) {
		t.Fatalf("socket still there after SIGTERM: %v", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	dirs := newDaemonDirs(t)
	// A socket file nobody listens on, as left by a daemon killed with SIGKILL.
	l, err := net.Listen("unix", dirs.socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	startDaemon(t, dirs.socket, "--config", dirs.writeConfig(t, ""))
}

func TestBadConfigNamesTheKey(t *testing.T) {
	tests := []struct {
		name, extra, want string
	}{
		{"unknown key", "[registry]\nmirror = \"x\"\n", "registry.mirror"},
		{"wrong type", "[registry]\nmax_concurrent_downloads = \"many\"\n", "registry.max_concurrent_downloads"},
		{"impossible value", "[registry]\nmax_concurrent_downloads = 0\n", "registry.max_concurrent_downloads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := newDaemonDirs(t)
			out, err := exec.Command(binary, "--config", dirs.writeConfig(t, tt.extra)).CombinedOutput()
			if err == nil {
				t.Fatalf("daemon accepted a bad config:\n%s", out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("error does not name %q:\n%s", tt.want, out)
			}
			if _, err := os.Lstat(dirs.socket); !os.IsNotExist(err) {
				t.Fatal("daemon with a bad config created its socket")
			}
		})
	}
}

func TestMissingExplicitConfigFails(t *testing.T) {
	out, err := exec.Command(binary, "--config", "/nonexistent/cri-mini.toml").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/nonexistent/cri-mini.toml") {
		t.Fatalf("missing --config file: err %v\n%s", err, out)
	}
}
