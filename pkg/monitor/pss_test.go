package monitor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memFigures are the lines of /proc/PID/smaps_rollup that matter for per-pod cost, in KiB.
// Pss counts shared pages (the binary's text, shared with every other monitor and the
// daemon) divided by their sharers; Private_* is what this monitor alone costs.
type memFigures map[string]int

var memKeys = []string{"Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty", "Anonymous"}

func readRollup(pid int) (memFigures, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, fmt.Errorf("open smaps_rollup: %w", err)
	}
	defer f.Close()
	out := memFigures{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 2 && fields[1] == "kB" {
			n, err := strconv.Atoi(fields[0])
			if err != nil {
				return nil, fmt.Errorf("smaps_rollup %s: %w", k, err)
			}
			out[k] = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read smaps_rollup: %w", err)
	}
	if _, ok := out["Pss"]; !ok {
		return nil, fmt.Errorf("smaps_rollup of %d has no Pss line", pid)
	}
	return out, nil
}

func (m memFigures) String() string {
	var b strings.Builder
	for _, k := range memKeys {
		fmt.Fprintf(&b, "%s=%dKiB ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// measureMonitor launches a monitor from exe, runs one container in it, lets it settle and
// returns its memory figures.
func measureMonitor(t *testing.T, exe string, env []string) memFigures {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, c, pid := startMonitorFrom(t, ctx, exe, env)
	if _, err := c.Create(ctx, "c", CreateOptions{LogPath: dir + "/c.log", Config: config("sh", "-c", "echo hi; exec sleep 1000")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, dir+"/c.log", "hi\n")
	if _, err := c.State(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	// Let the GC and the scavenger run as they would in a long-lived idle monitor.
	time.Sleep(1500 * time.Millisecond)
	m, err := readRollup(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMonitorPSS reports the memory of a monitor with one container (this package's test
// binary acting as the monitor) and holds it under a bound that catches regressions.
func TestMonitorPSS(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes the figures meaningless")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := measureMonitor(t, exe, append(os.Environ(), monitorEnv+"=1"))
	t.Logf("monitor with 1 container: %s", m)
	// Pss_Anon is what each pod pays alone; Pss_File is the binary's pages, shared by every
	// monitor and the daemon, so per pod it shrinks with the number of pods. The goal is
	// 1.5 MiB per pod in total; the bound catches regressions (the test binary links the
	// testing package and cgo's resolver on top of the monitor).
	const limitKiB = 4096
	if m["Pss_Anon"] > limitKiB {
		t.Errorf("monitor anonymous memory %d KiB over %d KiB", m["Pss_Anon"], limitKiB)
	}
}

// TestMonitorPSSBinary builds the monitor into small static binaries (testdata/pssprobe),
// once alone and once with the daemon's heavy dependencies linked in, and reports the memory
// of each with one container. It checks the claim that linking the daemon's packages into
// the same binary costs a monitor nothing: pages never touched are not resident, but package
// initialisers do run.
func TestMonitorPSSBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain in PATH to build the probe")
	}
	bin := t.TempDir()
	for _, variant := range []struct{ name, tags string }{{"monitor only", ""}, {"with daemon deps", "heavy"}} {
		t.Run(variant.name, func(t *testing.T) {
			exe := filepath.Join(bin, "probe-"+variant.tags)
			cmd := exec.Command(gobin, "build", "-tags", variant.tags, "-o", exe, "./testdata/pssprobe")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build probe: %v\n%s", err, out)
			}
			// Written-back pages: freshly linked pages still dirty in the page cache
			// would count as private.
			syscall.Sync()
			st, err := os.Stat(exe)
			if err != nil {
				t.Fatal(err)
			}
			m := measureMonitor(t, exe, os.Environ())
			t.Logf("binary %d KiB; monitor with 1 container: %s", st.Size()>>10, m)
			if !raceEnabled && m["Pss_Anon"] > 4096 {
				t.Errorf("monitor anonymous memory %d KiB over 4096 KiB", m["Pss_Anon"])
			}
		})
	}
}
