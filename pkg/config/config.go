// Package config holds cri-mini's configuration: defaults, the TOML file, and validation.
// Every key has a working default, so the daemon runs without any file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// DefaultPath is where the daemon looks for its config file when --config is not given.
const DefaultPath = "/etc/cri-mini/config.toml"

// Config is the daemon's effective configuration. The TOML names are the file's keys; the JSON
// names are what Status(verbose) reports.
type Config struct {
	// Listen is the path of the CRI gRPC unix socket ("unix://" prefix accepted).
	Listen string `toml:"listen" json:"listen"`
	// Root holds persistent state: metadata, image layers, container writable layers.
	Root string `toml:"root" json:"rootDir"`
	// State holds volatile state: namespace pins, monitor sockets, pod /dev/shm.
	State string `toml:"state" json:"stateDir"`
	// CgroupDriver is the cgroup manager; only "cgroupfs" is supported (no systemd here).
	CgroupDriver string `toml:"cgroup_driver" json:"cgroupDriver"`
	// ShutdownTimeout bounds how long in-flight RPCs may run after SIGTERM.
	ShutdownTimeout Duration `toml:"shutdown_timeout" json:"shutdownTimeout"`

	CNI       CNI       `toml:"cni" json:"cni"`
	Registry  Registry  `toml:"registry" json:"registry"`
	Sandbox   Sandbox   `toml:"sandbox" json:"sandbox"`
	Streaming Streaming `toml:"streaming" json:"streaming"`
	Metrics   Metrics   `toml:"metrics" json:"metrics"`
}

// CNI configures pod networking.
type CNI struct {
	// ConfDir is searched for the first valid network config (.conflist, .conf, .json) by name.
	ConfDir string `toml:"conf_dir" json:"confDir"`
	// BinDirs are searched for CNI plugin binaries, in order.
	BinDirs []string `toml:"bin_dirs" json:"binDirs"`
}

// Registry configures image pulls.
type Registry struct {
	// ConfigPath holds per-registry hosts.toml files in containerd's layout
	// (<config_path>/<host>/hosts.toml).
	ConfigPath string `toml:"config_path" json:"configPath"`
	// MaxConcurrentDownloads is the number of layers one pull fetches at once.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads" json:"maxConcurrentDownloads"`
	// ProgressTimeout fails a pull that has received no bytes for this long.
	ProgressTimeout Duration `toml:"progress_timeout" json:"progressTimeout"`
}

// Sandbox configures pod sandboxes.
type Sandbox struct {
	// ShmSize is the size in bytes of each pod's /dev/shm tmpfs.
	ShmSize int64 `toml:"shm_size" json:"shmSize"`
}

// Streaming configures the exec/attach/port-forward server.
type Streaming struct {
	// Address is host:port; port 0 picks a free port.
	Address string `toml:"address" json:"address"`
	// IdleTimeout closes a stream with no traffic for this long.
	IdleTimeout Duration `toml:"idle_timeout" json:"idleTimeout"`
	// TLSCert and TLSKey enable TLS when both are set.
	TLSCert string `toml:"tls_cert" json:"tlsCert"`
	TLSKey  string `toml:"tls_key" json:"tlsKey"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Address is host:port of the metrics endpoint; empty turns it off.
	Address string `toml:"address" json:"address"`
}

// Duration is a time.Duration written as a Go duration string ("1m30s") in TOML and JSON.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. \"30s\", \"1m\"): %q", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Default returns the configuration used when no file and no flag says otherwise.
func Default() Config {
	return Config{
		Listen:          "/run/cri-mini/cri-mini.sock",
		Root:            "/var/lib/cri-mini",
		State:           "/run/cri-mini",
		CgroupDriver:    "cgroupfs",
		ShutdownTimeout: Duration(10 * time.Second),
		CNI: CNI{
			ConfDir: "/etc/cni/net.d",
			BinDirs: []string{"/opt/cni/bin"},
		},
		Registry: Registry{
			ConfigPath:             "/etc/cri-mini/certs.d",
			MaxConcurrentDownloads: 3,
			ProgressTimeout:        Duration(time.Minute),
		},
		Sandbox: Sandbox{ShmSize: 64 << 20},
		Streaming: Streaming{
			Address:     "127.0.0.1:0",
			IdleTimeout: Duration(4 * time.Hour),
		},
	}
}

// Load reads the TOML file at path over the defaults. A missing file is fine when it is the
// default path (required=false); a missing file the user named is an error.
func Load(path string, required bool) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !required {
			return cfg, nil
		}
		return cfg, fmt.Errorf("read config %s: %w", path, err)
	}
	if err := Decode(data, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Decode parses TOML into cfg, rejecting unknown keys and wrong types with the key's name.
func Decode(data []byte, cfg *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(cfg)
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &strict):
		var keys []string
		for _, e := range strict.Errors {
			row, _ := e.Position()
			keys = append(keys, fmt.Sprintf("%q (line %d)", strings.Join(e.Key(), "."), row))
		}
		return fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	case errors.As(err, &de):
		row, _ := de.Position()
		if key := strings.Join(de.Key(), "."); key != "" {
			return fmt.Errorf("key %q (line %d): %s", key, row, de.Error())
		}
		return fmt.Errorf("line %d: %s", row, de.Error())
	default:
		return err
	}
}

// Validate rejects impossible values, naming the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	c.Listen = strings.TrimPrefix(c.Listen, "unix://")
	for _, p := range []struct{ key, val string }{
		{"listen", c.Listen}, {"root", c.Root}, {"state", c.State},
		{"cni.conf_dir", c.CNI.ConfDir}, {"registry.config_path", c.Registry.ConfigPath},
	} {
		// An empty registry.config_path turns per-host configuration off.
		if p.key == "registry.config_path" && p.val == "" {
			continue
		}
		if !filepath.IsAbs(p.val) {
			bad(p.key, "must be an absolute path, got %q", p.val)
		}
	}
	// A unix socket path must fit in sockaddr_un.sun_path (108 bytes with the NUL).
	if len(c.Listen) > 107 {
		bad("listen", "socket path is %d bytes, the kernel allows at most 107", len(c.Listen))
	}
	if len(c.CNI.BinDirs) == 0 {
		bad("cni.bin_dirs", "must list at least one directory")
	}
	for i, d := range c.CNI.BinDirs {
		if !filepath.IsAbs(d) {
			bad("cni.bin_dirs["+strconv.Itoa(i)+"]", "must be an absolute path, got %q", d)
		}
	}
	if c.CgroupDriver != "cgroupfs" {
		bad("cgroup_driver", "%q is not supported (supported: \"cgroupfs\")", c.CgroupDriver)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive, got %s", c.ShutdownTimeout.Std())
	}
	if c.Registry.MaxConcurrentDownloads < 1 || c.Registry.MaxConcurrentDownloads > 64 {
		bad("registry.max_concurrent_downloads", "must be between 1 and 64, got %d", c.Registry.MaxConcurrentDownloads)
	}
	if c.Registry.ProgressTimeout <= 0 {
		bad("registry.progress_timeout", "must be positive, got %s", c.Registry.ProgressTimeout.Std())
	}
	if c.Sandbox.ShmSize < 4096 {
		bad("sandbox.shm_size", "must be at least 4096 bytes, got %d", c.Sandbox.ShmSize)
	}
	if err := checkHostPort(c.Streaming.Address); err != nil {
		bad("streaming.address", "%v", err)
	}
	if c.Streaming.IdleTimeout <= 0 {
		bad("streaming.idle_timeout", "must be positive, got %s", c.Streaming.IdleTimeout.Std())
	}
	if (c.Streaming.TLSCert == "") != (c.Streaming.TLSKey == "") {
		bad("streaming.tls_cert", "tls_cert and tls_key must be set together")
	}
	if c.Metrics.Address != "" {
		if err := checkHostPort(c.Metrics.Address); err != nil {
			bad("metrics.address", "%v", err)
		}
	}
	return errors.Join(errs...)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number between 0 and 65535", port)
	}
	return nil
}
