// Package hosts reads registry host configuration in containerd's hosts.toml layout
// (<dir>/<registry host>/hosts.toml, falling back to <dir>/_default/hosts.toml) and turns every
// configured endpoint into an http.RoundTripper that sends a registry's requests there, so the
// same files a containerd user already has work unchanged.
package hosts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Capabilities a host entry may have (containerd names).
const (
	CapPull    = "pull"
	CapResolve = "resolve"
	CapPush    = "push"
)

// Host is one endpoint to try for a registry.
type Host struct {
	// URL is scheme://host plus the path that replaces the "/v2" prefix of registry API paths
	// (containerd appends "/v2" to a configured path unless override_path is set).
	URL          *url.URL
	Capabilities []string
	// Mirror is true for [host."..."] entries and false for the registry's own server.
	Mirror bool
	Header http.Header

	base http.RoundTripper
}

// Has reports whether the host has capability c.
func (h Host) Has(c string) bool { return slices.Contains(h.Capabilities, c) }

type entry struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
}

type file struct {
	Server       string           `toml:"server"`
	Capabilities []string         `toml:"capabilities"`
	CA           any              `toml:"ca"`
	Client       any              `toml:"client"`
	SkipVerify   *bool            `toml:"skip_verify"`
	Header       map[string]any   `toml:"header"`
	OverridePath bool             `toml:"override_path"`
	Host         map[string]entry `toml:"host"`
}

// Resolver loads host configuration and keeps one HTTP transport per distinct TLS setting, so
// that connections are reused across pulls.
type Resolver struct {
	dir string

	mu         sync.Mutex
	transports map[string]*http.Transport
}

// NewResolver reads configuration from dir (may be empty: then only defaults are used).
func NewResolver(dir string) *Resolver {
	return &Resolver{dir: dir, transports: map[string]*http.Transport{}}
}

// Close drops idle connections of every transport.
func (r *Resolver) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.transports {
		t.CloseIdleConnections()
	}
}

// IsLocalhost reports whether host (with optional port) is a loopback name, for which
// containerd, and so cri-mini, default to plain http.
func IsLocalhost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Hosts returns the endpoints for registry (the host part of a normalised reference, e.g.
// "docker.io", "registry.k8s.io", "127.0.0.1:5000") in the order to try them: the configured
// [host] entries in file order, then the server.
func (r *Resolver) Hosts(registry string) ([]Host, error) {
	cfgPath, data, err := r.read(registry)
	if err != nil {
		return nil, err
	}
	var f file
	if data != nil {
		if err := toml.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("parse %s: %w", cfgPath, err)
		}
	}
	baseDir := filepath.Dir(cfgPath)
	var out []Host
	for _, u := range hostOrder(data, f.Host) {
		e := f.Host[u]
		h, err := r.host(u, e, baseDir, []string{CapPull, CapResolve})
		if err != nil {
			return nil, fmt.Errorf("%s: host %q: %w", cfgPath, u, err)
		}
		h.Mirror = true
		out = append(out, h)
	}
	server := f.Server
	if server == "" {
		server = defaultServer(registry)
	}
	srv := entry{Capabilities: f.Capabilities, CA: f.CA, Client: f.Client, SkipVerify: f.SkipVerify,
		Header: f.Header, OverridePath: f.OverridePath}
	h, err := r.host(server, srv, baseDir, []string{CapPull, CapResolve, CapPush})
	if err != nil {
		return nil, fmt.Errorf("%s: server %q: %w", cfgPath, server, err)
	}
	return append(out, h), nil
}

func defaultServer(registry string) string {
	if registry == "docker.io" {
		return "https://registry-1.docker.io"
	}
	if IsLocalhost(registry) {
		return "http://" + registry
	}
	return "https://" + registry
}

// read finds the hosts.toml for registry; no file at all is not an error (defaults apply).
func (r *Resolver) read(registry string) (string, []byte, error) {
	if r.dir == "" {
		return "", nil, nil
	}
	for _, d := range []string{hostDirName(registry), "_default"} {
		p := filepath.Join(r.dir, d, "hosts.toml")
		data, err := os.ReadFile(p)
		if err == nil {
			return p, data, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", nil, fmt.Errorf("read registry config: %w", err)
		}
	}
	return "", nil, nil
}

// hostDirName is the directory containerd looks in: the host as written, with the port.
func hostDirName(registry string) string {
	if strings.ContainsAny(registry, `/\`) || registry == ".." || registry == "." {
		return "_invalid"
	}
	return registry
}

var hostHeader = regexp.MustCompile(`(?m)^\s*\[\s*host\.(?:"([^"]+)"|'([^']+)'|([^\]\s]+))\s*\]`)

// hostOrder returns the [host."..."] keys in the order they appear in the file: containerd tries
// them in that order and a map loses it. Keys not found by the scan (written in unusual TOML
// forms) follow, sorted.
func hostOrder(data []byte, m map[string]entry) []string {
	var order []string
	seen := map[string]bool{}
	for _, g := range hostHeader.FindAllSubmatch(data, -1) {
		k := string(g[1]) + string(g[2]) + string(g[3])
		if _, ok := m[k]; ok && !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(order, rest...)
}

func (r *Resolver) host(raw string, e entry, baseDir string, defCaps []string) (Host, error) {
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Host{}, fmt.Errorf("parse url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Host{}, fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return Host{}, errors.New("url has no host")
	}
	p := path.Clean("/" + u.Path)
	switch {
	case p == "/":
		p = "/v2"
	case !e.OverridePath && !strings.HasSuffix(p, "/v2"):
		p += "/v2"
	}
	u.Path, u.RawPath = p, ""
	caps := e.Capabilities
	if len(caps) == 0 {
		caps = defCaps
	}
	hdr, err := headers(e.Header)
	if err != nil {
		return Host{}, err
	}
	base, err := r.transport(e, baseDir)
	if err != nil {
		return Host{}, err
	}
	return Host{URL: u, Capabilities: caps, Header: hdr, base: base}, nil
}

func headers(m map[string]any) (http.Header, error) {
	h := http.Header{}
	for k, v := range m {
		switch vv := v.(type) {
		case string:
			h.Add(k, vv)
		case []any:
			for _, s := range vv {
				str, ok := s.(string)
				if !ok {
					return nil, fmt.Errorf("header %s: value %v is not a string", k, s)
				}
				h.Add(k, str)
			}
		default:
			return nil, fmt.Errorf("header %s: unsupported value %v", k, v)
		}
	}
	return h, nil
}

func stringList(v any) ([]string, error) {
	switch vv := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{vv}, nil
	case []any:
		var out []string
		for _, s := range vv {
			str, ok := s.(string)
			if !ok {
				return nil, fmt.Errorf("%v is not a string", s)
			}
			out = append(out, str)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value %v", v)
}

// clientPairs reads containerd's client setting: "cert.pem" (cert and key in one file) or
// [["cert.pem", "key.pem"], ...].
func clientPairs(v any) ([][2]string, error) {
	switch vv := v.(type) {
	case nil:
		return nil, nil
	case string:
		return [][2]string{{vv, vv}}, nil
	case []any:
		var out [][2]string
		for _, p := range vv {
			l, err := stringList(p)
			if err != nil || len(l) == 0 || len(l) > 2 {
				return nil, fmt.Errorf("client entry %v: want \"cert\" or [\"cert\", \"key\"]", p)
			}
			if len(l) == 1 {
				l = append(l, l[0])
			}
			out = append(out, [2]string{l[0], l[1]})
		}
		return out, nil
	}
	return nil, fmt.Errorf("client: unsupported value %v", v)
}

func resolvePath(baseDir, p string) string {
	if filepath.IsAbs(p) || baseDir == "" {
		return p
	}
	return filepath.Join(baseDir, p)
}

// transport returns the shared transport for e's TLS settings.
func (r *Resolver) transport(e entry, baseDir string) (*http.Transport, error) {
	cas, err := stringList(e.CA)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	clients, err := clientPairs(e.Client)
	if err != nil {
		return nil, err
	}
	for i := range cas {
		cas[i] = resolvePath(baseDir, cas[i])
	}
	for i := range clients {
		clients[i] = [2]string{resolvePath(baseDir, clients[i][0]), resolvePath(baseDir, clients[i][1])}
	}
	skip := e.SkipVerify != nil && *e.SkipVerify
	key := fmt.Sprintf("%q|%q|%v", cas, clients, skip)

	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.transports[key]; ok {
		return t, nil
	}
	tlsCfg := &tls.Config{InsecureSkipVerify: skip, MinVersion: tls.VersionTLS12} //nolint:gosec // skip_verify is the user's explicit choice
	if len(cas) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, ca := range cas {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("read ca %s: %w", ca, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca %s: no certificate found", ca)
			}
		}
		tlsCfg.RootCAs = pool
	}
	for _, c := range clients {
		cert, err := tls.LoadX509KeyPair(c[0], c[1])
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s: %w", c[0], err)
		}
		tlsCfg.Certificates = append(tlsCfg.Certificates, cert)
	}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       tlsCfg,
	}
	r.transports[key] = t
	return t, nil
}
