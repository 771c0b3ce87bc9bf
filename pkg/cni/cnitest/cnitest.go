// Package cnitest builds throw-away CNI networks for tests: a test-only bridge and subnet,
// a temporary conf dir, plugin binaries from CRI_MINI_CNI_BIN or the repository's
// _output/cni/bin (see hack/), and probes for leaked addresses, veths and iptables rules.
package cnitest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BinDir returns the directory holding bridge, host-local, loopback and portmap, or skips.
func BinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CRI_MINI_CNI_BIN")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "_output", "cni", "bin")
				break
			}
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Skipf("CNI plugin %s not found in %q: build them into _output/cni/bin or set CRI_MINI_CNI_BIN", p, dir)
		}
	}
	return dir
}

// NeedRoot skips unless running as root with iptables available.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, bridges and iptables rules")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables (the portmap and bridge plugins call it)")
	}
}

// Net is a test network.
type Net struct {
	Name    string // CNI network name
	Bridge  string
	Subnet  string
	ConfDir string
	DataDir string // host-local's allocation store
	BinDir  string // the real plugins
	// ExtraBinDir holds test plugins (FailPlugin); search it before BinDir.
	ExtraBinDir string
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// NewNet prepares a network with a random bridge name and 10.233.x.0/24 subnet. No config
// is written yet: call WriteConf. The bridge is deleted when the test ends.
func NewNet(t testing.TB) *Net {
	t.Helper()
	x, err := rand.Int(rand.Reader, big.NewInt(250))
	if err != nil {
		t.Fatal(err)
	}
	suffix := randHex(t, 3)
	n := &Net{
		Name:        "crm-test-" + suffix,
		Bridge:      "crm-t" + suffix,
		Subnet:      fmt.Sprintf("10.233.%d.0/24", x.Int64()+1),
		ConfDir:     t.TempDir(),
		DataDir:     t.TempDir(),
		BinDir:      BinDir(t),
		ExtraBinDir: t.TempDir(),
	}
	t.Cleanup(func() {
		// The bridge plugin never deletes its bridge; the test made it, the test removes it.
		_ = exec.Command("ip", "link", "del", n.Bridge).Run()
	})
	return n
}

// BinDirs is the plugin search path.
func (n *Net) BinDirs() []string { return []string{n.ExtraBinDir, n.BinDir} }

// Plugin returns the JSON of one plugin of the list.
func (n *Net) bridgePlugin() map[string]any {
	return map[string]any{
		"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": true,
		"ipam": map[string]any{
			"type": "host-local", "dataDir": n.DataDir,
			"ranges": [][]map[string]string{{{"subnet": n.Subnet}}},
			"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
		},
	}
}

// Conf returns a conflist: the bridge (with host-local), portmap, then extra plugin types.
// prepend lists plugin types to run before the bridge.
func (n *Net) Conf(version string, prepend, extra []string) []byte {
	var plugins []any
	for _, p := range prepend {
		plugins = append(plugins, map[string]any{"type": p})
	}
	plugins = append(plugins, n.bridgePlugin(),
		map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}})
	for _, p := range extra {
		plugins = append(plugins, map[string]any{"type": p})
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": version, "name": n.Name, "plugins": plugins})
	return b
}

// WriteConf writes data as file in the conf dir.
func (n *Net) WriteConf(t testing.TB, file string, data []byte) {
	t.Helper()
	tmp := filepath.Join(n.ConfDir, "."+file+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.ConfDir, file)); err != nil {
		t.Fatal(err)
	}
}

// FailPlugin installs a test plugin named name: its ADD fails while ExtraBinDir/<name>.fail-add
// exists and its DEL while <name>.fail-del exists; otherwise ADD returns an empty result (so
// put it before the bridge) and DEL succeeds.
func (n *Net) FailPlugin(t testing.TB, name string) {
	t.Helper()
	script := `#!/bin/sh
cat >/dev/null
dir=$(dirname "$0")
case "$CNI_COMMAND" in
ADD)
  if [ -e "$dir/` + name + `.fail-add" ]; then
    echo '{"cniVersion":"1.0.0","code":999,"msg":"injected ADD failure"}'; exit 1
  fi
  echo '{"cniVersion":"1.0.0"}' ;;
DEL)
  if [ -e "$dir/` + name + `.fail-del" ]; then
    echo '{"cniVersion":"1.0.0","code":999,"msg":"injected DEL failure"}'; exit 1
  fi ;;
VERSION)
  echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}' ;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(n.ExtraBinDir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// SetFail turns an injected failure ("add" or "del") of a FailPlugin on or off.
func (n *Net) SetFail(t testing.TB, name, verb string, on bool) {
	t.Helper()
	p := filepath.Join(n.ExtraBinDir, name+".fail-"+verb)
	if on {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// AllocatedIPs lists the addresses host-local holds for this network.
func (n *Net) AllocatedIPs(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.DataDir, n.Name))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if e.Name() == "lock" || strings.HasPrefix(e.Name(), "last_reserved_ip") {
			continue
		}
		ips = append(ips, e.Name())
	}
	return ips
}

// Veths lists the interfaces attached to the test bridge.
func (n *Net) Veths(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("/sys/class/net", n.Bridge, "brif"))
	if err != nil {
		return nil // no bridge: nothing attached
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// Rules returns the iptables rules (all tables) that mention this network's name: the
// bridge plugin's masquerade chains and portmap's DNAT rules carry it in a comment.
func (n *Net) Rules(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, n.Name) {
			rules = append(rules, l)
		}
	}
	return rules
}
