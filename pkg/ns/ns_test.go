package ns

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The main goroutine stays on the main thread, as in cmd/cri-mini: otherwise a throw-away
// namespace goroutine could run on the main thread, which the Go runtime never destroys.
func init() { runtime.LockOSThread() }

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces and bind mounts")
	}
}

// hostView captures what a namespace leak would change.
type hostView struct {
	netNS    map[string]bool // inodes of every thread's net namespace
	hostname string
	sysctl   string
}

func captureHost(t *testing.T) hostView {
	t.Helper()
	v := hostView{netNS: map[string]bool{}}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks {
		l, err := os.Readlink(p)
		if err != nil {
			continue // the thread exited meanwhile
		}
		v.netNS[l] = true
	}
	v.hostname, err = os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	v.sysctl, err = ReadSysctl("net.ipv4.ip_unprivileged_port_start")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func checkHost(t *testing.T, before hostView) {
	t.Helper()
	// A locked goroutine that ends without unlocking hands its thread back to the runtime,
	// which destroys it; that happens just after the goroutine's result was sent, so a dying
	// thread can still be listed for a moment. Give it up to 2 s to go.
	after := captureHost(t)
	for i := 0; i < 200 && len(after.netNS) != 1; i++ {
		time.Sleep(10 * time.Millisecond)
		after = captureHost(t)
	}
	if len(after.netNS) != 1 {
		t.Errorf("threads in %d network namespaces after the test: %v", len(after.netNS), after.netNS)
	}
	for n := range after.netNS {
		if !before.netNS[n] {
			t.Errorf("a thread of the test process is in network namespace %s", n)
		}
	}
	if after.hostname != before.hostname {
		t.Errorf("hostname changed: %q -> %q", before.hostname, after.hostname)
	}
	if after.sysctl != before.sysctl {
		t.Errorf("host sysctl changed: %q -> %q", before.sysctl, after.sysctl)
	}
}

func TestSysctlKind(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		ok   bool
	}{
		{"net.ipv4.ip_forward", Net, true},
		{"net/ipv4/conf/eth0.100/rp_filter", Net, true},
		{"kernel.shmmax", IPC, true},
		{"kernel.msgmax", IPC, true},
		{"kernel.sem", IPC, true},
		{"fs.mqueue.msg_max", IPC, true},
		{"kernel.domainname", UTS, true},
		{"kernel.pid_max", "", false},
		{"vm.swappiness", "", false},
		{"kernel.semx", "", false},
	}
	for _, tt := range tests {
		k, ok := SysctlKind(tt.name)
		if k != tt.kind || ok != tt.ok {
			t.Errorf("SysctlKind(%q) = %q, %v; want %q, %v", tt.name, k, ok, tt.kind, tt.ok)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net/ipv4/conf/eth0.100/rp_filter", "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"},
		{"net.ipv4.conf.eth0/100.rp_filter", "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"},
	}
	for _, tt := range tests {
		if got := sysctlPath(tt.in); got != tt.want {
			t.Errorf("sysctlPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckSysctls(t *testing.T) {
	tests := []struct {
		name    string
		sysctls map[string]string
		kinds   []Kind
		wantErr bool
	}{
		{"pod net ok", map[string]string{"net.core.somaxconn": "1024"}, []Kind{Net, IPC, UTS}, false},
		{"host net refuses net.*", map[string]string{"net.core.somaxconn": "1024"}, []Kind{IPC, UTS}, true},
		{"host ipc refuses shm", map[string]string{"kernel.shmmax": "1"}, []Kind{Net, UTS}, true},
		{"not namespaced", map[string]string{"vm.swappiness": "1"}, []Kind{Net, IPC, UTS}, true},
		{"traversal", map[string]string{"net..x": "1"}, []Kind{Net}, true},
		{"newline value", map[string]string{"net.core.somaxconn": "1\n2"}, []Kind{Net}, true},
	}
	for _, tt := range tests {
		err := CheckSysctls(tt.sysctls, tt.kinds)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", tt.name, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrSysctl) {
			t.Errorf("%s: error %v does not wrap ErrSysctl", tt.name, err)
		}
	}
}

func TestPinAndJoin(t *testing.T) {
	needRoot(t)
	before := captureHost(t)
	tests := []struct {
		name  string
		kinds []Kind
	}{
		{"all", []Kind{Net, IPC, UTS}},
		{"net only", []Kind{Net}},
		{"ipc and uts", []Kind{IPC, UTS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sysctls := map[string]string{}
			has := map[Kind]bool{}
			for _, k := range tt.kinds {
				has[k] = true
			}
			if has[Net] {
				sysctls["net.ipv4.ip_unprivileged_port_start"] = "77"
			}
			if has[IPC] {
				sysctls["kernel.shmmni"] = "1234"
			}
			pins, err := Pin(PinOptions{Dir: dir, Kinds: tt.kinds, Hostname: "pinned-host", Sysctls: sysctls})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				for _, p := range pins {
					if err := Unpin(p); err != nil {
						t.Error(err)
					}
				}
			}()
			if len(pins) != len(tt.kinds) {
				t.Fatalf("pins = %v, want %d", pins, len(tt.kinds))
			}
			for _, p := range pins {
				if !IsPinned(p) {
					t.Errorf("%s is not a namespace pin", p)
				}
			}
			var got struct {
				hostname, port, shm string
				loUp                bool
			}
			err = Do(Paths{Net: pins[Net], IPC: pins[IPC], UTS: pins[UTS]}, func() error {
				var uts unix.Utsname
				if err := unix.Uname(&uts); err != nil {
					return err
				}
				got.hostname = unix.ByteSliceToString(uts.Nodename[:])
				var err error
				if got.port, err = ReadSysctl("net.ipv4.ip_unprivileged_port_start"); err != nil {
					return err
				}
				if got.shm, err = ReadSysctl("kernel.shmmni"); err != nil {
					return err
				}
				got.loUp, err = LinkIsUp("lo")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if has[UTS] && got.hostname != "pinned-host" {
				t.Errorf("hostname in pod = %q", got.hostname)
			}
			if has[Net] && (got.port != "77" || !got.loUp) {
				t.Errorf("net sysctl in pod = %q, lo up = %v", got.port, got.loUp)
			}
			if has[IPC] && got.shm != "1234" {
				t.Errorf("kernel.shmmni in pod = %q", got.shm)
			}
		})
	}
	checkHost(t, before)
}

func TestPinRefusesHostSysctl(t *testing.T) {
	needRoot(t)
	before := captureHost(t)
	dir := t.TempDir()
	_, err := Pin(PinOptions{Dir: dir, Kinds: []Kind{IPC, UTS},
		Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "1"}})
	if !errors.Is(err, ErrSysctl) {
		t.Fatalf("err = %v, want ErrSysctl", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("pin dir not empty after refusal: %v", entries)
	}
	checkHost(t, before)
}

func TestPinFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	before := captureHost(t)
	dir := t.TempDir()
	// A sysctl that does not exist fails after unshare, before any pin is made.
	_, err := Pin(PinOptions{Dir: dir, Kinds: []Kind{Net, IPC, UTS},
		Sysctls: map[string]string{"net.ipv4.no_such_knob": "1"}})
	if err == nil {
		t.Fatal("Pin with an unknown sysctl succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("pin dir not empty after failure: %v", entries)
	}
	// A pin file that already exists fails the second bind and must undo the first.
	if err := os.WriteFile(filepath.Join(dir, "ipc"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Pin(PinOptions{Dir: dir, Kinds: []Kind{Net, IPC}})
	if err == nil || !strings.Contains(err.Error(), "ipc") {
		t.Fatalf("err = %v, want a failure on the ipc pin", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "net")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("net pin left behind after failure: %v", err)
	}
	checkHost(t, before)
}

func TestUnpinIdempotent(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	pins, err := Pin(PinOptions{Dir: dir, Kinds: []Kind{Net}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := Unpin(pins[Net]); err != nil {
			t.Fatalf("unpin #%d: %v", i, err)
		}
	}
	if IsPinned(pins[Net]) {
		t.Error("still pinned")
	}
}
