package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/ns"
	ctrruntime "github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// usernsHost is the first host ID of the test pods' user namespaces: far above any ID in
// use on the machine, a multiple of 65536 as kubelet picks them.
const usernsHost = 1 << 20

func usernsPod(i int) sandbox.Config {
	c := podConfig(i, true)
	c.Sysctls["kernel.shmmni"] = "1234"
	c.UserNS = &sandbox.UserNamespace{
		UIDMappings: []sandbox.IDMapping{{ContainerID: 0, HostID: usernsHost, Length: 65536}},
		GIDMappings: []sandbox.IDMapping{{ContainerID: 0, HostID: usernsHost + 65536, Length: 65536}},
	}
	return c
}

// testChildren lists the children of every thread of the test process: the holder is
// started from whichever thread ran exec.Cmd.Start.
func testChildren(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}

func nsenterUserCat(t *testing.T, userPin, file string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--user="+userPin, "cat", "/proc/self/"+file).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter --user=%s cat %s: %v: %s", userPin, file, err, out)
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

// checkUsernsPod asserts that sb's namespaces are owned by its pinned user namespace, that
// the namespace maps what was asked, and that hostname, sysctls and network are set.
func checkUsernsPod(t *testing.T, sb *sandbox.Sandbox, hostname string) {
	t.Helper()
	if sb.UsernsPath == "" || !ns.IsPinned(sb.UsernsPath) {
		t.Fatalf("user namespace pin %q is not pinned", sb.UsernsPath)
	}
	for _, p := range []string{sb.NetNSPath, sb.IPCNSPath, sb.UTSNSPath} {
		if owned, err := ns.OwnedBy(p, sb.UsernsPath); err != nil || !owned {
			t.Errorf("%s owned by the pod's user namespace: %v, %v", p, owned, err)
		}
	}
	if got, want := nsenterUserCat(t, sb.UsernsPath, "uid_map"), fmt.Sprintf("0 %d 65536", usernsHost); got != want {
		t.Errorf("uid_map = %q, want %q", got, want)
	}
	if got, want := nsenterUserCat(t, sb.UsernsPath, "gid_map"), fmt.Sprintf("0 %d 65536", usernsHost+65536); got != want {
		t.Errorf("gid_map = %q, want %q", got, want)
	}
	if uid, gid, ok := sb.RootHostIDs(); !ok || uid != usernsHost || gid != usernsHost+65536 {
		t.Errorf("RootHostIDs = %d, %d, %v", uid, gid, ok)
	}
	var gotHost, port, shm string
	err := ns.Do(ns.Paths{Net: sb.NetNSPath, IPC: sb.IPCNSPath, UTS: sb.UTSNSPath}, func() error {
		var err error
		if gotHost, err = os.Hostname(); err != nil {
			return err
		}
		if port, err = ns.ReadSysctl("net.ipv4.ip_unprivileged_port_start"); err != nil {
			return err
		}
		shm, err = ns.ReadSysctl("kernel.shmmni")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if gotHost != hostname || port != "0" || shm != "1234" {
		t.Errorf("in pod: hostname %q, port sysctl %q, shmmni %q", gotHost, port, shm)
	}
	if len(sb.IPs) != 1 {
		t.Errorf("IPs = %v, want one from CNI ADD", sb.IPs)
	}
	// The pod's files are its root's, as root's are in any other pod.
	for _, f := range []string{sb.HostsPath, sb.ResolvConfPath, sb.HostnamePath} {
		var st unix.Stat_t
		if err := unix.Stat(f, &st); err != nil || st.Uid != usernsHost || st.Gid != usernsHost+65536 {
			t.Errorf("%s owned by %d:%d (%v), want the pod root's %d:%d", f, st.Uid, st.Gid, err, usernsHost, usernsHost+65536)
		}
	}
}

// TestPodUserNamespace runs pods with a user namespace of their own: the namespaces must
// be owned by it and configured, the holder gone, a restarted manager must keep the pin and
// the mappings (and notice a lost user pin), and Remove must leave nothing.
func TestPodUserNamespace(t *testing.T) {
	e := newEnv(t, nil)
	before := captureHost(t)
	ctx := context.Background()
	sb, err := e.m.Run(ctx, usernsPod(40))
	if err != nil {
		t.Fatal(err)
	}
	checkUsernsPod(t, sb, "pod-40")
	if kids := testChildren(t); len(kids) != 0 {
		t.Errorf("processes left after Run: %v", kids)
	}
	// The daemon's way: the holder is a sealed copy of the binary.
	bin := ctrruntime.NewSealedBinary("")
	t.Cleanup(bin.Close)
	opts := e.opts
	opts.UsernsHolder = bin
	m2, err := sandbox.NewManager(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	sb2, err := m2.Run(ctx, usernsPod(41))
	if err != nil {
		t.Fatal(err)
	}
	checkUsernsPod(t, sb2, "pod-41")
	if kids := testChildren(t); len(kids) != 0 {
		t.Errorf("processes left after Run: %v", kids)
	}
	checkHost(t, before)

	// A restart keeps what the container side needs; a lost user pin (the others alive)
	// makes the sandbox NOTREADY like any lost pin.
	if err := ns.Unpin(sb2.UsernsPath); err != nil {
		t.Fatal(err)
	}
	m3, err := sandbox.NewManager(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m3.Get(sb.ID)
	if err != nil || got.State != sandbox.StateReady || got.UsernsPath != sb.UsernsPath ||
		len(got.UIDMappings()) != 1 || got.UIDMappings()[0] != sb.UIDMappings()[0] ||
		len(got.GIDMappings()) != 1 || got.GIDMappings()[0] != sb.GIDMappings()[0] {
		t.Errorf("after restart: %+v, %v; want READY with the user pin and mappings", got, err)
	}
	if got, err := m3.Get(sb2.ID); err != nil || got.State != sandbox.StateNotReady {
		t.Errorf("sandbox without its user pin after restart: %+v, %v; want NOTREADY", got, err)
	}
	if err := m3.Stop(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{sb.ID, sb2.ID} {
		if err := m3.Remove(ctx, id); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	for _, p := range []string{sb.UsernsPath, sb.NetNSPath, sb2.UsernsPath} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin %s left after Remove: %v", p, err)
		}
	}
	e.m = m3
	e.checkClean(t, []string{sb.ID, sb2.ID})
	if kids := testChildren(t); len(kids) != 0 {
		t.Errorf("processes left after Remove: %v", kids)
	}
	checkHost(t, before)
}

// TestPodUserNamespaceFailureLeavesNothing: a step failing after the user namespace was
// created (a sysctl the kernel refuses, written as host root or as the pod's root) undoes
// every pin, kills the holder and releases the name.
func TestPodUserNamespaceFailureLeavesNothing(t *testing.T) {
	e := newEnv(t, nil)
	before := captureHost(t)
	ctx := context.Background()
	for _, sysctl := range []string{"net.ipv4.no_such_knob", "kernel.shmmni"} {
		t.Run(sysctl, func(t *testing.T) {
			c := usernsPod(42)
			c.Sysctls[sysctl] = "not-a-number"
			if _, err := e.m.Run(ctx, c); err == nil || !strings.Contains(err.Error(), sysctl) {
				t.Fatalf("Run err = %v, want a failure writing %s", err, sysctl)
			}
			entries, _ := os.ReadDir(filepath.Join(e.opts.StateDir, "sandboxes"))
			if len(entries) != 0 {
				t.Errorf("sandbox dirs left: %v", entries)
			}
			e.checkClean(t, nil)
			if kids := testChildren(t); len(kids) != 0 {
				t.Errorf("processes left after a failed Run: %v", kids)
			}
		})
	}
	sb, err := e.m.Run(ctx, usernsPod(42))
	if err != nil {
		t.Fatalf("Run after the failures: %v", err)
	}
	if err := e.m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.checkClean(t, []string{sb.ID})
	checkHost(t, before)
}

// TestPodInitInUserNamespace: a shared-PID pod with a user namespace gets its init inside
// that user namespace, in a PID namespace the user namespace owns (the containers, root
// there, must be able to mount its proc), and Remove leaves nothing.
func TestPodInitInUserNamespace(t *testing.T) {
	e := newEnv(t, nil)
	before := captureHost(t)
	ctx := context.Background()
	bin := ctrruntime.NewSealedBinary("")
	t.Cleanup(bin.Close)
	inits := sandbox.NewPodInits(filepath.Join(t.TempDir(), "inits"), e.cg, bin)
	opts := e.opts
	opts.Hooks.StartPodInit, opts.Hooks.StopPodInit = inits.Start, inits.Stop
	m, err := sandbox.NewManager(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := usernsPod(43)
	c.PIDMode = sandbox.ModePod
	sb, err := m.Run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	pid := inits.Pid(sb.ID)
	if pid == 0 {
		t.Fatal("no pod init running after Run")
	}
	proc := "/proc/" + strconv.Itoa(pid)
	for _, k := range []string{"user", "net"} {
		pin, _ := os.Stat(map[string]string{"user": sb.UsernsPath, "net": sb.NetNSPath}[k])
		if st, err := os.Stat(proc + "/ns/" + k); err != nil || !os.SameFile(pin, st) {
			t.Errorf("pod init is not in the pod's %s namespace (%v)", k, err)
		}
	}
	if owned, err := ns.OwnedBy(proc+"/ns/pid", sb.UsernsPath); err != nil || !owned {
		t.Errorf("pod init's PID namespace owned by the pod's user namespace: %v, %v", owned, err)
	}
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "NSpid:\t"+strconv.Itoa(pid)+"\t1\n") {
		t.Errorf("pod init is not PID 1 of a new PID namespace:\n%s", status)
	}
	if err := m.Stop(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(proc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod init still there after Remove: %v", err)
	}
	e.m = m
	e.checkClean(t, []string{sb.ID})
	checkHost(t, before)
}
