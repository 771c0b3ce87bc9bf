package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultTOMLMatchesDefault(t *testing.T) {
	var cfg Config
	if err := Decode([]byte(DefaultTOML), &cfg); err != nil {
		t.Fatalf("decode DefaultTOML: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("DefaultTOML decodes to\n%+v\nwant Default()\n%+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config is invalid: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.toml")
	cfg, err := Load(missing, false)
	if err != nil {
		t.Fatalf("optional missing file: %v", err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("got %+v, want defaults", cfg)
	}
	if _, err := Load(missing, true); err == nil {
		t.Fatal("a config file the user named must exist")
	}
}

func TestLoadOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	data := "root = \"/srv/crimini\"\n[registry]\nmax_concurrent_downloads = 5\nprogress_timeout = \"30s\"\n[cni]\nbin_dirs = [\"/a\", \"/b\"]\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/srv/crimini" || cfg.Registry.MaxConcurrentDownloads != 5 ||
		cfg.Registry.ProgressTimeout.Std() != 30*time.Second || !reflect.DeepEqual(cfg.CNI.BinDirs, []string{"/a", "/b"}) {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	// Keys the file does not name keep their defaults.
	if cfg.State != Default().State || cfg.CNI.ConfDir != Default().CNI.ConfDir {
		t.Fatalf("defaults lost: %+v", cfg)
	}
}

func TestDecodeErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"unknown top-level key", "listn = \"/x.sock\"\n", `"listn"`},
		{"unknown nested key", "[registry]\nmirrors = 1\n", `"registry.mirrors"`},
		{"wrong type", "[registry]\nmax_concurrent_downloads = \"three\"\n", `"registry.max_concurrent_downloads"`},
		{"bad duration", "shutdown_timeout = \"soon\"\n", `shutdown_timeout`},
		{"syntax", "root = \n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			err := Decode([]byte(tt.data), &cfg)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"unix scheme accepted", func(c *Config) { c.Listen = "unix:///tmp/x.sock" }, ""},
		{"relative root", func(c *Config) { c.Root = "var/lib" }, "root:"},
		{"relative listen", func(c *Config) { c.Listen = "x.sock" }, "listen:"},
		{"long socket path", func(c *Config) { c.Listen = "/" + strings.Repeat("a", 120) }, "listen:"},
		{"systemd driver", func(c *Config) { c.CgroupDriver = "systemd" }, "cgroup_driver:"},
		{"zero downloads", func(c *Config) { c.Registry.MaxConcurrentDownloads = 0 }, "registry.max_concurrent_downloads:"},
		{"negative progress timeout", func(c *Config) { c.Registry.ProgressTimeout = -1 }, "registry.progress_timeout:"},
		{"no bin dirs", func(c *Config) { c.CNI.BinDirs = nil }, "cni.bin_dirs:"},
		{"relative bin dir", func(c *Config) { c.CNI.BinDirs = []string{"/ok", "bin"} }, "cni.bin_dirs[1]:"},
		{"streaming not host:port", func(c *Config) { c.Streaming.Address = "127.0.0.1" }, "streaming.address:"},
		{"streaming bad port", func(c *Config) { c.Streaming.Address = "127.0.0.1:99999" }, "streaming.address:"},
		{"tls half set", func(c *Config) { c.Streaming.TLSCert = "/c.pem" }, "streaming.tls_cert:"},
		{"metrics bad", func(c *Config) { c.Metrics.Address = "nohost" }, "metrics.address:"},
		{"metrics on", func(c *Config) { c.Metrics.Address = "127.0.0.1:9090" }, ""},
		{"no registry host config", func(c *Config) { c.Registry.ConfigPath = "" }, ""},
		{"relative registry config", func(c *Config) { c.Registry.ConfigPath = "certs.d" }, "registry.config_path:"},
		{"tiny shm", func(c *Config) { c.Sandbox.ShmSize = 1 }, "sandbox.shm_size:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestValidateStripsUnixScheme(t *testing.T) {
	cfg := Default()
	cfg.Listen = "unix:///run/x.sock"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "/run/x.sock" {
		t.Fatalf("listen = %q", cfg.Listen)
	}
}
