package sandbox

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/store"
)

func TestValidate(t *testing.T) {
	ok := Config{Name: "web", Namespace: "default", UID: "u-1"}
	tests := []struct {
		name   string
		change func(c *Config)
		field  string // "" = valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "metadata.name"},
		{"no namespace", func(c *Config) { c.Namespace = "" }, "metadata.namespace"},
		{"no uid", func(c *Config) { c.UID = "" }, "metadata.uid"},
		{"slash in name", func(c *Config) { c.Name = "a/b" }, "metadata.name"},
		{"bad hostname", func(c *Config) { c.Hostname = "-bad-" }, "hostname"},
		{"long hostname", func(c *Config) { c.Hostname = strings.Repeat("a", 65) }, "hostname"},
		{"container net mode", func(c *Config) { c.NetworkMode = ModeContainer }, "namespace_options.network"},
		{"target pid mode", func(c *Config) { c.PIDMode = ModeTarget }, "namespace_options.pid"},
		{"net sysctl with host network", func(c *Config) {
			c.NetworkMode = ModeNode
			c.Sysctls = map[string]string{"net.core.somaxconn": "10"}
		}, "linux.sysctls"},
		{"ipc sysctl with host ipc", func(c *Config) {
			c.IPCMode = ModeNode
			c.Sysctls = map[string]string{"kernel.shmmax": "10"}
		}, "linux.sysctls"},
		{"host sysctl", func(c *Config) { c.Sysctls = map[string]string{"vm.swappiness": "1"} }, "linux.sysctls"},
		{"pod sysctls ok", func(c *Config) {
			c.Sysctls = map[string]string{"net.core.somaxconn": "10", "kernel.shmmni": "100"}
		}, ""},
		{"bad protocol", func(c *Config) { c.PortMappings = []PortMapping{{Protocol: "ICMP", ContainerPort: 1}} }, "protocol"},
		{"bad container port", func(c *Config) { c.PortMappings = []PortMapping{{ContainerPort: 0}} }, "container_port"},
		{"bad host ip", func(c *Config) { c.PortMappings = []PortMapping{{ContainerPort: 1, HostIP: "x"}} }, "host_ip"},
		{"bad dns server", func(c *Config) { c.DNS = &DNSConfig{Servers: []string{"dns.example"}} }, "dns_config.servers"},
		{"bad cgroup parent", func(c *Config) { c.CgroupParent = "/../x" }, "linux.cgroup_parent"},
		{"systemd cgroup parent", func(c *Config) { c.CgroupParent = "kubepods.slice" }, "linux.cgroup_parent"},
		{"bad resources", func(c *Config) { c.Resources = &Resources{MemoryLimit: -5} }, "linux.resources"},
		{"userns kubelet shape", func(c *Config) { c.UserNS = userns(65536*7, 65536) }, ""},
		{"userns critest shape", func(c *Config) { c.UserNS = userns(1000, 100000) }, ""},
		{"userns up to the last ID", func(c *Config) { c.UserNS = userns(math.MaxUint32-65536, 65536) }, ""},
		{"userns past the last ID", func(c *Config) { c.UserNS = userns(math.MaxUint32-65535, 65536) }, "userns_options.uids[0]"},
		{"userns no uid mapping", func(c *Config) { c.UserNS.UIDMappings = nil }, "userns_options.uids"},
		{"userns no gid mapping", func(c *Config) { c.UserNS.GIDMappings = nil }, "userns_options.gids"},
		{"userns two uid mappings", func(c *Config) {
			c.UserNS.UIDMappings = append(c.UserNS.UIDMappings, IDMapping{ContainerID: 65536, HostID: 1 << 24, Length: 1})
		}, "userns_options.uids"},
		{"userns two gid mappings", func(c *Config) {
			c.UserNS.GIDMappings = append(c.UserNS.GIDMappings, IDMapping{ContainerID: 65536, HostID: 1 << 24, Length: 1})
		}, "userns_options.gids"},
		{"userns root not mapped", func(c *Config) { c.UserNS.UIDMappings[0].ContainerID = 1 }, "userns_options.uids[0].container_id"},
		{"userns gid root not mapped", func(c *Config) { c.UserNS.GIDMappings[0].ContainerID = 1 }, "userns_options.gids[0].container_id"},
		{"userns empty range", func(c *Config) { c.UserNS.GIDMappings[0].Length = 0 }, "userns_options.gids[0].length"},
		{"userns host root", func(c *Config) { c.UserNS.UIDMappings[0].HostID = 0 }, "userns_options.uids[0].host_id"},
		{"userns host gid root", func(c *Config) { c.UserNS.GIDMappings[0].HostID = 0 }, "userns_options.gids[0].host_id"},
		{"userns host network", func(c *Config) { c.NetworkMode = ModeNode }, "namespace_options.network"},
		{"userns host ipc", func(c *Config) { c.IPCMode = ModeNode }, "namespace_options.ipc"},
		{"userns host pid", func(c *Config) { c.PIDMode = ModeNode }, "namespace_options.pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			if strings.HasPrefix(tt.name, "userns") {
				// Kubelet's shape: PID per container unless the pod shares one.
				c.UserNS, c.PIDMode = userns(1<<20, 65536), ModeContainer
			}
			tt.change(&c)
			err := validate(&c)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, store.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrInvalidArgument naming %s", err, tt.field)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	host := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(host, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dns  *DNSConfig
		want string
	}{
		{"host copy", nil, "nameserver 192.0.2.1\n"},
		{"full", &DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}},
			"search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"},
		{"servers only", &DNSConfig{Servers: []string{"1.1.1.1"}}, "nameserver 1.1.1.1\n"},
	}
	for _, tt := range tests {
		got, err := resolvConf(tt.dns, host)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestHostsFile(t *testing.T) {
	host := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(host, []byte("192.0.2.5 node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		hostNetwork bool
		ips         []string
		contains    []string
		absent      []string
	}{
		{"host network copies", true, nil, []string{"192.0.2.5 node"}, []string{"localhost"}},
		{"pod", false, []string{"10.0.0.5", "fd00::5"}, []string{"127.0.0.1\tlocalhost", "10.0.0.5\tpod-h", "fd00::5\tpod-h"}, []string{"192.0.2.5"}},
	}
	for _, tt := range tests {
		b, err := hostsFile(tt.hostNetwork, "pod-h", tt.ips, host)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range tt.contains {
			if !strings.Contains(string(b), c) {
				t.Errorf("%s: %q missing from %q", tt.name, c, b)
			}
		}
		for _, c := range tt.absent {
			if strings.Contains(string(b), c) {
				t.Errorf("%s: %q present in %q", tt.name, c, b)
			}
		}
	}
}

func TestResolvePrefix(t *testing.T) {
	m := &Manager{byID: map[string]*entry{}, names: map[string]string{}}
	for _, id := range []string{"abc111", "abc222", "def333"} {
		m.byID[id] = &entry{rec: record{Sandbox: Sandbox{ID: id}}}
	}
	tests := []struct {
		in     string
		wantID string
		err    error
	}{
		{"abc111", "abc111", nil},
		{"abc1", "abc111", nil},
		{"d", "def333", nil},
		{"abc", "", store.ErrInvalidArgument},
		{"zzz", "", store.ErrNotFound},
		{"", "", store.ErrInvalidArgument},
	}
	for _, tt := range tests {
		sb, err := m.Get(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Get(%q) err = %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || sb.ID != tt.wantID {
			t.Errorf("Get(%q) = %v, %v; want %s", tt.in, sb, err, tt.wantID)
		}
	}
}

func userns(host, length uint32) *UserNamespace {
	return &UserNamespace{
		UIDMappings: []IDMapping{{HostID: host, Length: length}},
		GIDMappings: []IDMapping{{HostID: host, Length: length}},
	}
}

func TestRootHostIDs(t *testing.T) {
	sb := &Sandbox{}
	if _, _, ok := sb.RootHostIDs(); ok || sb.UIDMappings() != nil || sb.GIDMappings() != nil {
		t.Error("a pod without a user namespace reports mappings")
	}
	sb.Config.UserNS = &UserNamespace{
		UIDMappings: []IDMapping{{ContainerID: 0, HostID: 1 << 20, Length: 65536}},
		GIDMappings: []IDMapping{{ContainerID: 0, HostID: 2 << 20, Length: 65536}},
	}
	if uid, gid, ok := sb.RootHostIDs(); !ok || uid != 1<<20 || gid != 2<<20 {
		t.Errorf("RootHostIDs = %d, %d, %v", uid, gid, ok)
	}
	if h, ok := HostID(sb.UIDMappings(), 1000); !ok || h != 1<<20+1000 {
		t.Errorf("HostID(1000) = %d, %v", h, ok)
	}
	c := sb.clone()
	c.Config.UserNS.UIDMappings[0].HostID = 5
	if sb.Config.UserNS.UIDMappings[0].HostID != 1<<20 {
		t.Error("a clone shares the mappings with the original")
	}
}
