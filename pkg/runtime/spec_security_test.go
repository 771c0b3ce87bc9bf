package runtime_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

func TestBuildSpecSecurity(t *testing.T) {
	all := []string{"CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"}
	def := runtime.DefaultCapabilities()
	slices.Sort(def)
	cases := []struct {
		name     string
		sec      runtime.Security
		uid      uint32
		bounding []string
		eff      []string
		masked   []string
		ro       []string
		rootRO   bool
		nnp      bool
		sysRW    bool
	}{
		{name: "defaults", bounding: def, eff: def,
			masked: runtime.DefaultMaskedPaths(), ro: runtime.DefaultReadonlyPaths()},
		{name: "drop all add one, nnp, ro rootfs",
			sec:      runtime.Security{CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"ALL"}, AllCaps: all, NoNewPrivs: true, ReadonlyRootfs: true},
			bounding: []string{"CAP_NET_ADMIN"}, eff: []string{"CAP_NET_ADMIN"},
			masked: runtime.DefaultMaskedPaths(), ro: runtime.DefaultReadonlyPaths(), rootRO: true, nnp: true},
		{name: "request paths replace the defaults",
			sec:      runtime.Security{MaskedPaths: []string{"/bin/ls"}, ReadonlyPaths: []string{"/tmp"}},
			bounding: def, eff: def, masked: []string{"/bin/ls"}, ro: []string{"/tmp"}},
		{name: "non-root user has empty effective set", uid: 1000, bounding: def,
			masked: runtime.DefaultMaskedPaths(), ro: runtime.DefaultReadonlyPaths()},
		{name: "privileged", sec: runtime.Security{Privileged: true, AllCaps: all, CapDrop: []string{"ALL"},
			MaskedPaths: []string{"/x"}, HostDevDir: t.TempDir()},
			bounding: all, eff: all, sysRW: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := runtime.BuildSpec(runtime.SpecOptions{
				Container: runtime.ContainerConfig{Command: []string{"sh"}}, Rootfs: "/r",
				User: specs.User{UID: tc.uid}, Security: tc.sec,
			})
			if err != nil {
				t.Fatal(err)
			}
			eq := func(what string, got, want any) {
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			c := s.Process.Capabilities
			eq("bounding", c.Bounding, tc.bounding)
			eq("effective", len(c.Effective) == 0 && len(tc.eff) == 0 || reflect.DeepEqual(c.Effective, tc.eff), true)
			eq("inheritable", len(c.Inheritable), 0)
			eq("masked paths", s.Linux.MaskedPaths, tc.masked)
			eq("read-only paths", s.Linux.ReadonlyPaths, tc.ro)
			eq("read-only rootfs", s.Root.Readonly, tc.rootRO)
			eq("no_new_privs", s.Process.NoNewPrivileges, tc.nnp)
			for _, m := range s.Mounts {
				if m.Destination == "/sys" {
					eq("/sys read-only", slices.Contains(m.Options, "ro"), !tc.sysRW)
				}
			}
			if tc.sec.Privileged {
				eq("device rules", s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}})
			}
		})
	}
}

func TestPrivilegedHostDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating device nodes needs root")
	}
	dir := t.TempDir()
	for _, n := range []string{"null", "sda", "pts/0", "misc/fuse"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, n)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(name string, mode uint32, major, minor uint32) {
		t.Helper()
		if err := mknod(filepath.Join(dir, name), mode, major, minor); err != nil {
			t.Fatal(err)
		}
	}
	mk("null", charDev, 1, 3)
	mk("sda", blockDev, 8, 0)
	mk("pts/0", charDev, 136, 0)
	mk("misc/fuse", charDev, 10, 229)
	if err := os.WriteFile(filepath.Join(dir, "regular"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := runtime.BuildSpec(runtime.SpecOptions{
		Container: runtime.ContainerConfig{Command: []string{"sh"}}, Rootfs: "/r",
		Security: runtime.Security{Privileged: true, HostDevDir: dir},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range s.Linux.Devices {
		got[d.Path] = d.Type
	}
	want := map[string]string{"/dev/sda": "b", "/dev/misc/fuse": "c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("devices %v, want %v (null and pts are the init's own)", got, want)
	}
}

func TestResolveUserStrict(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nimg:x:50000:app\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(rootfs, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		spec    string
		resolve func(string, string, []uint32) (specs.User, error)
		want    []uint32
	}{
		{name: "merge", spec: "1000", resolve: runtime.ResolveUser, want: []uint32{50000, 1234}},
		{name: "merge with a group", spec: "1000:1000", resolve: runtime.ResolveUser, want: []uint32{50000, 1234}},
		{name: "merge by name", spec: "app", resolve: runtime.ResolveUser, want: []uint32{50000, 1234}},
		{name: "strict", spec: "1000", resolve: runtime.ResolveUserStrict, want: []uint32{1234}},
		{name: "strict with a group", spec: "1000:1000", resolve: runtime.ResolveUserStrict, want: []uint32{1234}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.resolve(rootfs, tc.spec, []uint32{1234})
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != 1000 || u.GID != 1000 || !reflect.DeepEqual(u.AdditionalGids, tc.want) {
				t.Errorf("got %+v, want uid 1000 gid 1000 groups %v", u, tc.want)
			}
		})
	}
}
