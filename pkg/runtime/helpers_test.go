package runtime_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// The test binary is also the container init and exec helper: Create and Exec re-execute
// /proc/self/exe with these subcommands. The main goroutine stays on the main thread, as in
// cmd/cri-mini, so that namespace work never lands on it.
func init() { goruntime.LockOSThread() }

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case runtime.InitCommand:
			os.Exit(runtime.InitMain())
		case runtime.ExecHelperCommand:
			os.Exit(runtime.ExecHelperMain())
		case sealedSelfCheck:
			os.Exit(sealedSelfMain())
		}
	}
	os.Exit(m.Run())
}

const busybox = "/bin/busybox"

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces, mounts and cgroups")
	}
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("needs a static busybox at %s for the test rootfs (apt-get install busybox-static): %v", busybox, err)
	}
}

// pod is a minimal sandbox: pinned namespaces, its files and a cgroup parent.
type pod struct {
	pins   ns.Pins
	paths  runtime.SandboxPaths
	cgm    *cgroups.Manager
	cgroup string
	layers string // image layer base dir
	// viaJSON creates containers with CreateJSON (the monitor's way) instead of Create.
	viaJSON bool
	// userns: the containers run in a user namespace, as root of it, which is no one on
	// the host, so the directories of their rootfs must be traversable by anyone.
	userns bool
}

func randID(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newPod(t *testing.T, symlinkHosts bool) *pod {
	t.Helper()
	dir := t.TempDir()
	pins, err := ns.Pin(ns.PinOptions{Dir: filepath.Join(dir, "ns"), Kinds: []ns.Kind{ns.Net, ns.IPC, ns.UTS}, Hostname: "podhost"})
	if err != nil {
		t.Fatalf("pin pod namespaces: %v", err)
	}
	t.Cleanup(func() {
		for _, p := range pins {
			_ = ns.Unpin(p)
		}
	})
	p := &pod{pins: pins, cgm: cgroups.New(), cgroup: "/cri-mini-runtime-test-" + randID(t)}
	// Registered before any container's cleanup, so it runs after all of them.
	t.Cleanup(func() {
		if p.cgm.Exists(p.cgroup) {
			if err := p.cgm.Remove(p.cgroup); err != nil {
				t.Errorf("remove pod cgroup: %v", err)
			}
		}
	})
	files := map[string]string{"resolv.conf": "nameserver 10.9.8.7\n", "hosts": "127.0.0.1 localhost podhost\n", "hostname": "podhost\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shm := filepath.Join(dir, "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		t.Fatal(err)
	}
	p.paths = runtime.SandboxPaths{
		NetNS: pins[ns.Net], IPCNS: pins[ns.IPC], UTSNS: pins[ns.UTS],
		ResolvConf: filepath.Join(dir, "resolv.conf"), Hosts: filepath.Join(dir, "hosts"),
		HostnameFile: filepath.Join(dir, "hostname"), Shm: shm,
	}
	p.layers = makeLayers(t, symlinkHosts)
	return p
}

// makeLayers builds a two-layer busybox image: "bottom" has the binary, its applets and
// /etc, "top" adds /marker-top (to see that both layers are stacked).
func makeLayers(t *testing.T, symlinkHosts bool) string {
	t.Helper()
	base := t.TempDir()
	bottom := filepath.Join(base, "bottom")
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(bottom, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bottom, "bin/busybox"), src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "ls", "hostname", "echo", "touch", "sleep", "id", "readlink", "test", "grep"} {
		if err := os.Symlink("busybox", filepath.Join(bottom, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	etc := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
		"group":  "root:x:0:\nnogroup:x:65534:\nextra:x:1234:nobody\n",
	}
	for name, content := range etc {
		if err := os.WriteFile(filepath.Join(bottom, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if symlinkHosts {
		// An image trying to make the runtime bind the pod's hosts file over a host path.
		if err := os.Symlink("/host-file", filepath.Join(bottom, "etc/hosts")); err != nil {
			t.Fatal(err)
		}
	}
	top := filepath.Join(base, "top")
	if err := os.MkdirAll(top, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "marker-top"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return base
}

// run is one container of a test: created, its stdout+stderr in a file.
type run struct {
	c   *runtime.Container
	out *os.File
	dir string
}

func (p *pod) create(t *testing.T, args []string, mutate func(*specs.Spec)) *run {
	t.Helper()
	r, err := p.tryCreate(t, args, mutate)
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	return r
}

// tryCreate creates a container; on error it has removed the rootfs and the cgroup.
func (p *pod) tryCreate(t *testing.T, args []string, mutate func(*specs.Spec)) (*run, error) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ctr")
	var rootfs *runtime.Rootfs
	var err error
	if p.userns {
		traversable(t, filepath.Dir(dir))
		rootfs, err = runtime.MountRootfsUserNS(p.layers, []string{"top", "bottom"}, dir,
			runtime.UserNamespace{Path: p.paths.UserNS, UID: usernsHost, GID: usernsHost})
	} else {
		rootfs, err = runtime.MountRootfs(p.layers, []string{"top", "bottom"}, dir)
	}
	if err != nil {
		t.Fatalf("mount rootfs: %v", err)
	}
	cg := p.cgroup + "/" + randID(t)
	if _, err := p.cgm.Create(cg, nil); err != nil {
		_ = runtime.RemoveRootfs(dir)
		t.Fatalf("create cgroup: %v", err)
	}
	spec, err := runtime.BuildSpec(runtime.SpecOptions{
		Container: runtime.ContainerConfig{Command: args},
		Sandbox:   p.paths, Hostname: "podhost", Rootfs: rootfs.Path, CgroupsPath: cg,
	})
	if err != nil {
		t.Fatalf("build spec: %v", err)
	}
	if mutate != nil {
		mutate(spec)
	}
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	var c *runtime.Container
	if p.viaJSON {
		raw, merr := json.Marshal(spec)
		if merr != nil {
			t.Fatal(merr)
		}
		c, err = runtime.CreateJSON(ctx, raw, runtime.Stdio{Stdout: out, Stderr: out}, p.cgm)
		if err == nil {
			c.Rootfs = rootfs // removed by Delete, as Create's
		}
	} else {
		c, err = runtime.Create(ctx, spec, rootfs, runtime.Stdio{Stdout: out, Stderr: out}, p.cgm)
	}
	if err != nil {
		if rerr := runtime.RemoveRootfs(dir); rerr != nil {
			t.Errorf("remove rootfs after failed create: %v", rerr)
		}
		if rerr := p.cgm.Remove(cg); rerr != nil {
			t.Errorf("remove cgroup after failed create (a process left in it?): %v", rerr)
		}
		_ = out.Close()
		return nil, err
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background()); err != nil {
			t.Errorf("delete container: %v", err)
		}
		_ = out.Close()
	})
	return &run{c: c, out: out, dir: dir}, nil
}

// wait waits up to 20 seconds for the container to exit and returns its output.
func (r *run) wait(t *testing.T) (string, runtime.ExitStatus) {
	t.Helper()
	select {
	case <-time.After(20 * time.Second):
		_ = r.c.Signal(9)
		t.Fatal("container did not exit within 20s")
	case <-waitCh(r.c):
	}
	st, err := r.c.Wait()
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	b, err := io.ReadAll(io.NewSectionReader(r.out, 0, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b), st
}

func waitCh(c *runtime.Container) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_, _ = c.Wait()
		close(ch)
	}()
	return ch
}

// nsSnapshot lists the namespaces of every thread of the test process.
func nsSnapshot(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, task := range tasks {
		for _, kind := range []string{"net", "mnt", "pid", "ipc", "uts"} {
			l, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns", kind))
			if err != nil {
				continue // the thread exited meanwhile
			}
			seen[l] = true
		}
	}
	var out []string
	for l := range seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

func checkNamespacesUnchanged(t *testing.T, before []string) {
	t.Helper()
	// A thread discarded by a locked goroutine is destroyed by the runtime just after that
	// goroutine's result was sent: give a dying thread up to 2 s to go.
	after := nsSnapshot(t)
	for i := 0; i < 200 && strings.Join(after, ",") != strings.Join(before, ","); i++ {
		time.Sleep(10 * time.Millisecond)
		after = nsSnapshot(t)
	}
	if strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("test process threads changed namespaces: before %v, after %v", before, after)
	}
}

func nsInode(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", fi.Sys().(*syscall.Stat_t).Ino)
}
