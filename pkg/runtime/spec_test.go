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

func TestBuildSpecProcess(t *testing.T) {
	img := runtime.ImageConfig{
		Env: []string{"PATH=/img/bin", "A=image", "B=image"}, Entrypoint: []string{"/entry"},
		Cmd: []string{"img-arg"}, WorkingDir: "/img-wd",
	}
	cases := []struct {
		name    string
		img     runtime.ImageConfig
		ctr     runtime.ContainerConfig
		args    []string
		env     []string
		cwd     string
		wantErr bool
	}{
		{name: "image only", img: img, args: []string{"/entry", "img-arg"},
			env: []string{"PATH=/img/bin", "A=image", "B=image"}, cwd: "/img-wd"},
		{name: "request args keep entrypoint", img: img, ctr: runtime.ContainerConfig{Args: []string{"x"}},
			args: []string{"/entry", "x"}, env: img.Env, cwd: "/img-wd"},
		{name: "request command drops image cmd", img: img, ctr: runtime.ContainerConfig{Command: []string{"/c"}},
			args: []string{"/c"}, env: img.Env, cwd: "/img-wd"},
		{name: "request command and args, env and wd win", img: img,
			ctr:  runtime.ContainerConfig{Command: []string{"/c"}, Args: []string{"y"}, Env: []string{"B=req", "C=req"}, WorkingDir: "/w"},
			args: []string{"/c", "y"}, env: []string{"PATH=/img/bin", "A=image", "B=req", "C=req"}, cwd: "/w"},
		{name: "default PATH and cwd", img: runtime.ImageConfig{Cmd: []string{"sh"}},
			args: []string{"sh"}, env: []string{runtime.DefaultPath}, cwd: "/"},
		{name: "no command at all", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := runtime.BuildSpec(runtime.SpecOptions{Image: tc.img, Container: tc.ctr, Rootfs: "/r"})
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.Args, tc.args) {
				t.Errorf("args %q, want %q", s.Process.Args, tc.args)
			}
			if !reflect.DeepEqual(s.Process.Env, tc.env) {
				t.Errorf("env %q, want %q", s.Process.Env, tc.env)
			}
			if s.Process.Cwd != tc.cwd {
				t.Errorf("cwd %q, want %q", s.Process.Cwd, tc.cwd)
			}
		})
	}
}

func TestBuildSpecMounts(t *testing.T) {
	sb := runtime.SandboxPaths{NetNS: "/pins/net", UTSNS: "/pins/uts", Hosts: "/sb/hosts", ResolvConf: "/sb/resolv", HostnameFile: "/sb/hostname", Shm: "/sb/shm"}
	s, err := runtime.BuildSpec(runtime.SpecOptions{
		Container: runtime.ContainerConfig{Command: []string{"sh"}, Mounts: []runtime.Mount{
			{ContainerPath: "/etc/hosts", HostPath: "/mine/hosts", Readonly: true},
			{ContainerPath: "/data/sub", HostPath: "/vol", Propagation: runtime.PropagationHostToContainer},
		}},
		Sandbox: sb, Rootfs: "/r",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]specs.Mount{}
	var order []string
	for _, m := range s.Mounts {
		got[m.Destination] = m
		order = append(order, m.Destination)
	}
	for dst, src := range map[string]string{
		"/etc/hosts": "/mine/hosts", "/etc/resolv.conf": "/sb/resolv", "/etc/hostname": "/sb/hostname",
		"/dev/shm": "/sb/shm", "/data/sub": "/vol", "/proc": "proc", "/sys": "sysfs", "/dev/pts": "devpts", "/dev/mqueue": "mqueue",
	} {
		if got[dst].Source != src {
			t.Errorf("mount %s source %q, want %q", dst, got[dst].Source, src)
		}
	}
	if !reflect.DeepEqual(got["/etc/hosts"].Options, []string{"rbind", "rprivate", "ro"}) {
		t.Errorf("request mount options %v", got["/etc/hosts"].Options)
	}
	if !reflect.DeepEqual(got["/data/sub"].Options, []string{"rbind", "rslave", "rw"}) {
		t.Errorf("propagation options %v", got["/data/sub"].Options)
	}
	pos := map[string]int{}
	for i, d := range order {
		pos[d] = i
	}
	if pos["/dev"] > pos["/dev/pts"] || pos["/dev"] > pos["/dev/shm"] {
		t.Errorf("/dev must come before the mounts under it: %v", order)
	}
	var nsTypes []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		nsTypes = append(nsTypes, n.Type)
	}
	want := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace, specs.NetworkNamespace, specs.UTSNamespace}
	if !reflect.DeepEqual(nsTypes, want) {
		t.Errorf("namespaces %v, want %v (host IPC left out)", nsTypes, want)
	}
	if len(s.Linux.MaskedPaths) == 0 || len(s.Linux.ReadonlyPaths) == 0 {
		t.Error("default masked and read-only paths missing")
	}
}

func TestResolveUser(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1001:\nwheel:x:10:app\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(rootfs, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		spec    string
		extra   []uint32
		want    specs.User
		wantErr bool
	}{
		{spec: "", want: specs.User{UID: 0, GID: 0}},
		{spec: "app", want: specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10}}},
		// An explicit primary group keeps the groups /etc/group gives the user (the CRI's
		// SupplementalGroupsPolicy Merge, as containerd does), for a name or a uid.
		{spec: "app:root", extra: []uint32{42}, want: specs.User{UID: 1000, GID: 0, AdditionalGids: []uint32{10, 42}}},
		{spec: "1000:4343", want: specs.User{UID: 1000, GID: 4343, AdditionalGids: []uint32{10}}},
		{spec: "4242:4343", want: specs.User{UID: 4242, GID: 4343}},
		{spec: "nobody-here", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			u, err := runtime.ResolveUser(rootfs, tc.spec, tc.extra)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", u)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(u, tc.want) {
				t.Errorf("got %+v, want %+v", u, tc.want)
			}
		})
	}
}

// TestRootfsPropagation: "/" stays a slave of the host unless a mount asks for bidirectional
// propagation, which needs its host peer group kept.
func TestRootfsPropagation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mounts []runtime.Mount
		want   string
	}{
		{"no mounts", nil, "rslave"},
		{"private and host-to-container", []runtime.Mount{
			{ContainerPath: "/a", HostPath: "/a"},
			{ContainerPath: "/b", HostPath: "/b", Propagation: runtime.PropagationHostToContainer},
		}, "rslave"},
		{"one bidirectional", []runtime.Mount{
			{ContainerPath: "/a", HostPath: "/a"},
			{ContainerPath: "/c", HostPath: "/c", Propagation: runtime.PropagationBidirectional},
		}, "rshared"},
	} {
		s, err := runtime.BuildSpec(runtime.SpecOptions{
			Container: runtime.ContainerConfig{Command: []string{"sh"}, Mounts: tc.mounts},
			Rootfs:    "/r",
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.Linux.RootfsPropagation != tc.want {
			t.Errorf("%s: rootfs propagation %q, want %q", tc.name, s.Linux.RootfsPropagation, tc.want)
		}
	}
}

// TestBuildSpecUserns: a container of a pod with a user namespace joins it, records its
// mappings, and gets its devices bound from the host instead of created (mknod is refused
// in a user namespace), with the same cgroup rule.
func TestBuildSpecUserns(t *testing.T) {
	m := []runtime.IDMapping{{ContainerID: 0, HostID: 1 << 20, Size: 65536}}
	s, err := runtime.BuildSpec(runtime.SpecOptions{
		Container: runtime.ContainerConfig{Command: []string{"sh"},
			Devices: []runtime.Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "r"}},
			Mounts:  []runtime.Mount{{ContainerPath: "/vol", HostPath: "/srv/vol", IDMapped: true}}},
		Sandbox: runtime.SandboxPaths{UserNS: "/run/pod/user", UIDMappings: m, GIDMappings: m},
		Rootfs:  "/rootfs",
	})
	if err != nil {
		t.Fatal(err)
	}
	var userns string
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.UserNamespace {
			userns = n.Path
		}
	}
	if userns != "/run/pod/user" {
		t.Errorf("user namespace %q in %+v", userns, s.Linux.Namespaces)
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1 << 20, Size: 65536}}
	if !reflect.DeepEqual(s.Linux.UIDMappings, want) || !reflect.DeepEqual(s.Linux.GIDMappings, want) {
		t.Errorf("mappings %+v %+v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	if len(s.Linux.Devices) != 0 {
		t.Errorf("devices to create: %+v", s.Linux.Devices)
	}
	var bind *specs.Mount
	for i, mnt := range s.Mounts {
		if mnt.Destination == "/dev/mynull" {
			bind = &s.Mounts[i]
		}
	}
	if bind == nil || bind.Source != "/dev/null" || !slices.Contains(bind.Options, "ro") {
		t.Errorf("device bind %+v", bind)
	}
	for _, mnt := range s.Mounts {
		idmapped := slices.Contains(mnt.Options, "idmap")
		if idmapped != (mnt.Destination == "/vol") || (idmapped && (!reflect.DeepEqual(mnt.UIDMappings, want) || !reflect.DeepEqual(mnt.GIDMappings, want))) {
			t.Errorf("mount %+v: idmapped %v", mnt, idmapped)
		}
	}
	if _, err := runtime.BuildSpec(runtime.SpecOptions{
		Container: runtime.ContainerConfig{Command: []string{"sh"}, Mounts: []runtime.Mount{{ContainerPath: "/vol", HostPath: "/srv/vol", IDMapped: true}}},
		Rootfs:    "/rootfs",
	}); err == nil {
		t.Error("an idmapped mount without a user namespace was accepted")
	}
	if r := s.Linux.Resources.Devices; len(r) != 1 || r[0].Access != "r" || *r[0].Major != 1 || *r[0].Minor != 3 {
		t.Errorf("device cgroup rules %+v", r)
	}
}
