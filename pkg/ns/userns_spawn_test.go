package ns

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// testUsernsHost is the host uid and gid that root of the test user namespace maps to.
const testUsernsHost = 1 << 20

// userns starts a process in a new user namespace mapping 0 to testUsernsHost (65536 ids)
// and returns the path of that namespace; the process ends with the test.
func userns(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: testUsernsHost, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: m, GidMappings: m, GidMappingsEnableSetgroups: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

func nsIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// ownerIno is the inode of the user namespace that owns the namespace at path.
func ownerIno(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS %s: %v", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestStartInUserns: the child runs as root of the given user namespace, as pid 1 of a
// PID namespace and in a mount namespace both owned by it, is our child, and reports its
// exit status through Wait.
func TestStartInUserns(t *testing.T) {
	needRoot(t)
	user := userns(t)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinR.Close()
	defer stdinW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	script := `echo "$$ $(id -u) $(id -g) $(id -G)"; cat /proc/self/uid_map; read -r line; exit 7`
	child, err := StartInUserns(Paths{}, UsernsSpawn{
		Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		Files:  []*os.File{stdinR, outW, outW},
		Userns: user, Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, CgroupFD: -1, Setsid: true,
	})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Release()
	rd := bufio.NewReader(outR)
	ids, _ := rd.ReadString('\n')
	if got, want := strings.TrimSpace(ids), "1 0 0 0"; got != want {
		t.Errorf("pid, uid, gid, groups inside: %q, want %q", got, want)
	}
	uidMap, _ := rd.ReadString('\n')
	if f := strings.Fields(uidMap); len(f) != 3 || f[0] != "0" || f[1] != strconv.Itoa(testUsernsHost) {
		t.Errorf("uid_map %q", uidMap)
	}
	proc := "/proc/" + strconv.Itoa(child.Pid)
	if got, want := nsIno(t, proc+"/ns/user"), nsIno(t, user); got != want {
		t.Errorf("child's user namespace %d, want %d", got, want)
	}
	for _, k := range []string{"pid", "mnt"} {
		if got, want := ownerIno(t, proc+"/ns/"+k), nsIno(t, user); got != want {
			t.Errorf("%s namespace owned by user namespace %d, want %d", k, got, want)
		}
	}
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("PPid:\t%d\n", os.Getpid()); !strings.Contains(string(status), want) {
		t.Errorf("child is not ours: %s", status)
	}
	if !strings.Contains(string(status), fmt.Sprintf("Uid:\t%d\t%d", testUsernsHost, testUsernsHost)) {
		t.Errorf("child's host uid: %s", status)
	}
	stdinW.Close()
	ws, err := child.Wait()
	if err != nil || !ws.Exited() || ws.ExitStatus() != 7 {
		t.Fatalf("wait: %v exit %d, %v", ws, ws.ExitStatus(), err)
	}
	if err := child.Signal(syscall.SIGKILL); err != os.ErrProcessDone {
		t.Errorf("signal after exit: %v, want os.ErrProcessDone", err)
	}
}

// TestStartInUsernsKilled: a signal through the child handle kills it and Wait says so.
func TestStartInUsernsKilled(t *testing.T) {
	needRoot(t)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	child, err := StartInUserns(Paths{}, UsernsSpawn{
		Path: "/bin/sleep", Args: []string{"sleep", "60"},
		Files: []*os.File{devnull, devnull, devnull}, Userns: userns(t), CgroupFD: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer child.Release()
	if err := child.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ws, err := child.Wait()
	if err != nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("wait: %v, %v; want killed by SIGKILL", ws, err)
	}
}

// TestStartInUsernsErrors: each failure names its step, and leaves no child behind.
func TestStartInUsernsErrors(t *testing.T) {
	needRoot(t)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	files := []*os.File{devnull, devnull, devnull}
	notUserns := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	for _, tc := range []struct {
		name string
		s    UsernsSpawn
		want string
	}{
		{"missing program", UsernsSpawn{Path: "/nonexistent", Args: []string{"x"}, Files: files, Userns: userns(t), CgroupFD: -1}, "execve: no such file"},
		{"not a user namespace", UsernsSpawn{Path: "/bin/true", Args: []string{"true"}, Files: files, Userns: notUserns, CgroupFD: -1}, "join the user namespace: invalid argument"},
		{"no namespace file", UsernsSpawn{Path: "/bin/true", Args: []string{"true"}, Files: files, Userns: "/nonexistent", CgroupFD: -1}, "open user namespace"},
		{"closed file", UsernsSpawn{Path: "/bin/true", Args: []string{"true"}, Files: []*os.File{nil}, Userns: userns(t), CgroupFD: -1}, "not open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := StartInUserns(Paths{}, tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			// Every child was reaped: nothing is left to wait for but the userns holders.
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid > 0 {
				t.Errorf("a child was left to reap: pid %d (%v)", pid, err)
			}
		})
	}
}

// TestStartInUsernsIntoCgroup: with a cgroup v2 directory the child starts in it. The check
// that clone3 makes for CLONE_INTO_CGROUP (may the caller write the cgroup's procs file?)
// fails for the root of a user namespace on a host-owned cgroup, so the cgroup must be
// entered before the user namespace is.
func TestStartInUsernsIntoCgroup(t *testing.T) {
	needRoot(t)
	var fs unix.Statfs_t
	const unified = "/sys/fs/cgroup/unified"
	if err := unix.Statfs(unified, &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		if err := unix.Statfs("/sys/fs/cgroup", &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
			t.Skip("no cgroup v2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified")
		}
	}
	root := unified
	if fs.Type == unix.CGROUP2_SUPER_MAGIC && unix.Statfs(unified, &fs) != nil {
		root = "/sys/fs/cgroup"
	}
	name := fmt.Sprintf("crm-ns-test-%d", os.Getpid())
	dir := root + "/" + name
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	child, err := StartInUserns(Paths{}, UsernsSpawn{
		Path: "/bin/cat", Args: []string{"cat", "/proc/self/cgroup"},
		Files:  []*os.File{devnull, outW, outW},
		Userns: userns(t), Cloneflags: unix.CLONE_NEWNS, CgroupFD: int(cg.Fd()),
	})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Release()
	b, _ := io.ReadAll(outR)
	if _, err := child.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "0::/"+name+"\n") {
		t.Errorf("child's cgroups:\n%s\nwant 0::/%s", b, name)
	}
}

// TestStartInUsernsDescriptors: the program gets exactly the descriptors it was given, in
// order, however many there are (nothing of ours leaks in), and a failure after they are
// placed is still reported.
func TestStartInUsernsDescriptors(t *testing.T) {
	needRoot(t)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	files := []*os.File{devnull, outW, outW}
	for range 12 {
		files = append(files, devnull)
	}
	// A program that does not exist fails at execve, after the 15 descriptors are placed.
	_, err = StartInUserns(Paths{}, UsernsSpawn{Path: "/nonexistent", Args: []string{"x"}, Files: files, Userns: userns(t), CgroupFD: -1})
	if err == nil || !strings.Contains(err.Error(), "execve") {
		t.Fatalf("error %v, want the execve failure", err)
	}
	child, err := StartInUserns(Paths{}, UsernsSpawn{
		Path: "/bin/ls", Args: []string{"ls", "/proc/self/fd"},
		Files: files, Userns: userns(t), CgroupFD: -1,
	})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Release()
	b, _ := io.ReadAll(outR)
	if _, err := child.Wait(); err != nil {
		t.Fatal(err)
	}
	// What the test process itself inherited without close-on-exec reaches every child.
	inherited := map[string]bool{}
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		fd, _ := strconv.Atoi(e.Name())
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			inherited[e.Name()] = true
		}
	}
	var extra []string
	for _, fd := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(fd)
		if n >= len(files)+1 && !inherited[fd] { // +1: the directory ls reads
			extra = append(extra, fd)
		}
	}
	if len(extra) != 0 || !strings.Contains(string(b), "14") {
		t.Errorf("the program's descriptors %q: extra %v, want 0 to 14 and ls's own", b, extra)
	}
}

// BenchmarkStartInUserns is the cost of starting (and reaping) a program in a user
// namespace through the hand-made fork, next to BenchmarkStartIn's exec.Cmd in ours.
func BenchmarkStartInUserns(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	user := userns(b)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	for b.Loop() {
		c, err := StartInUserns(Paths{}, UsernsSpawn{Path: "/bin/true", Args: []string{"true"},
			Files: []*os.File{devnull, devnull, devnull}, Userns: user, Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, CgroupFD: -1})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Wait(); err != nil {
			b.Fatal(err)
		}
		_ = c.Release()
	}
}

func BenchmarkStartIn(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for b.Loop() {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS}
		if err := StartIn(Paths{}, cmd); err != nil {
			b.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
