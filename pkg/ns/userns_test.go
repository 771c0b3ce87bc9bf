package ns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary act as the user namespace holder: Pin re-executes its own
// binary with HoldCommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HoldCommand {
		os.Exit(HoldMain())
	}
	os.Exit(m.Run())
}

// children lists the PIDs of the test process's children.
func children(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("/proc/self/task/*/children")
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

// nsenterCat prints a file of /proc/self as seen from inside the user namespace at userPin.
func nsenterCat(t *testing.T, userPin, file string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--user="+userPin, "cat", "/proc/self/"+file).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter --user=%s cat %s: %v: %s", userPin, file, err, out)
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

func TestPinWithUser(t *testing.T) {
	needRoot(t)
	before := captureHost(t)
	dir := t.TempDir()
	const host = 1 << 20
	u := &UserOptions{
		UIDMappings: []IDMap{{ContainerID: 0, HostID: host, Size: 65536}},
		GIDMappings: []IDMap{{ContainerID: 0, HostID: host + 65536, Size: 65536}},
	}
	pins, err := Pin(PinOptions{Dir: dir, Kinds: []Kind{Net, IPC, UTS}, Hostname: "userns-host", User: u,
		Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "77", "kernel.shmmni": "1234"}})
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
	if len(pins) != 4 {
		t.Fatalf("pins = %v, want user, net, ipc, uts", pins)
	}
	if kids := children(t); len(kids) != 0 {
		t.Errorf("children left after Pin: %v", kids)
	}
	for _, k := range []Kind{User, Net, IPC, UTS} {
		if !IsPinned(pins[k]) {
			t.Errorf("%s is not a namespace pin", pins[k])
		}
	}
	for _, k := range []Kind{Net, IPC, UTS} {
		owned, err := OwnedBy(pins[k], pins[User])
		if err != nil || !owned {
			t.Errorf("%s namespace owned by the pinned user namespace: %v, %v", k, owned, err)
		}
	}
	if owned, err := OwnedBy(pins[Net], "/proc/self/ns/user"); err != nil || owned {
		t.Errorf("net namespace owned by the host's user namespace: %v, %v", owned, err)
	}
	if got, want := nsenterCat(t, pins[User], "uid_map"), fmt.Sprintf("0 %d 65536", host); got != want {
		t.Errorf("uid_map = %q, want %q", got, want)
	}
	if got, want := nsenterCat(t, pins[User], "gid_map"), fmt.Sprintf("0 %d 65536", host+65536); got != want {
		t.Errorf("gid_map = %q, want %q", got, want)
	}
	if got := nsenterCat(t, pins[User], "setgroups"); got != "allow" {
		t.Errorf("setgroups = %q, want allow", got)
	}
	var hostname, port, shm string
	var loUp bool
	err = Do(Paths{Net: pins[Net], IPC: pins[IPC], UTS: pins[UTS]}, func() error {
		var err error
		if hostname, err = os.Hostname(); err != nil {
			return err
		}
		if port, err = ReadSysctl("net.ipv4.ip_unprivileged_port_start"); err != nil {
			return err
		}
		if shm, err = ReadSysctl("kernel.shmmni"); err != nil {
			return err
		}
		loUp, err = LinkIsUp("lo")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if hostname != "userns-host" || port != "77" || shm != "1234" || !loUp {
		t.Errorf("in pod: hostname %q, port sysctl %q, shmmni %q, lo up %v", hostname, port, shm, loUp)
	}
	checkHost(t, before)
}

func TestPinWithUserFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	before := captureHost(t)
	u := &UserOptions{
		UIDMappings: []IDMap{{HostID: 1 << 20, Size: 65536}},
		GIDMappings: []IDMap{{HostID: 1 << 20, Size: 65536}},
	}
	notExe, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer notExe.Close()
	badHolder := *u
	badHolder.Holder = notExe
	for _, tt := range []struct {
		name string
		o    PinOptions
		want string
	}{
		// Fails in the configuration step, after every pin was made.
		{"unknown sysctl", PinOptions{Kinds: []Kind{Net, IPC, UTS}, User: u,
			Sysctls: map[string]string{"net.ipv4.no_such_knob": "1"}}, "no_such_knob"},
		// Fails before any pin.
		{"holder does not start", PinOptions{Kinds: []Kind{Net}, User: &badHolder}, "user namespace holder"},
		// Overlapping host ranges: the kernel refuses the uid_map write.
		{"bad map", PinOptions{Kinds: []Kind{Net}, User: &UserOptions{
			UIDMappings: []IDMap{{HostID: 1 << 20, Size: 10}, {ContainerID: 10, HostID: 1 << 20, Size: 10}},
			GIDMappings: u.GIDMappings}}, "user namespace holder"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Dir = t.TempDir()
			_, err := Pin(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(tt.o.Dir); len(entries) != 0 {
				t.Errorf("pin dir not empty after failure: %v", entries)
			}
			if kids := children(t); len(kids) != 0 {
				t.Errorf("children left after a failed Pin: %v", kids)
			}
		})
	}
	checkHost(t, before)
}

func TestHoldMainEndsAtEOF(t *testing.T) {
	cmd := exec.Command("/proc/self/exe", HoldCommand)
	cmd.Stdin = strings.NewReader("anything")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("holder with a closed stdin: %v: %s", err, out)
	}
}

func TestHostID(t *testing.T) {
	m := []IDMap{{ContainerID: 0, HostID: 1 << 20, Size: 65536}, {ContainerID: 70000, HostID: 5000, Size: 1}}
	for _, tt := range []struct {
		id, want uint32
		ok       bool
	}{
		{0, 1 << 20, true}, {65535, 1<<20 + 65535, true}, {65536, 0, false},
		{70000, 5000, true}, {70001, 0, false}, {^uint32(0), 0, false},
	} {
		if got, ok := HostID(m, tt.id); got != tt.want || ok != tt.ok {
			t.Errorf("HostID(%d) = %d, %v; want %d, %v", tt.id, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := HostID([]IDMap{{ContainerID: ^uint32(0), HostID: 1, Size: 10}}, 3); ok {
		t.Error("a map near the top of the ID space matched a low ID")
	}
}
