package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRewriteConflist(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "cni", "10-cri-mini.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "in.conflist")
	if err := os.WriteFile(conf, src, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := rewriteConflist(floorOptions{conf: conf, bridge: "crm-test0", subnet: "10.1.2.0/24"}, "/leases")
	if err != nil {
		t.Fatal(err)
	}
	var got, orig map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(src, &orig); err != nil {
		t.Fatal(err)
	}
	plugins := got["plugins"].([]any)
	bridge := plugins[0].(map[string]any)
	if bridge["bridge"] != "crm-test0" {
		t.Errorf("bridge = %v, want crm-test0", bridge["bridge"])
	}
	ipam := bridge["ipam"].(map[string]any)
	wantRanges := []any{[]any{map[string]any{"subnet": "10.1.2.0/24"}}}
	if !reflect.DeepEqual(ipam["ranges"], wantRanges) || ipam["dataDir"] != "/leases" {
		t.Errorf("ipam = %v, want subnet 10.1.2.0/24 and dataDir /leases", ipam)
	}
	// Everything else is the daemon's: the same plugins with the same options.
	origBridge := orig["plugins"].([]any)[0].(map[string]any)
	for _, k := range []string{"type", "isGateway", "ipMasq", "hairpinMode"} {
		if bridge[k] != origBridge[k] {
			t.Errorf("bridge %s = %v, want %v", k, bridge[k], origBridge[k])
		}
	}
	if !reflect.DeepEqual(ipam["routes"], origBridge["ipam"].(map[string]any)["routes"]) {
		t.Errorf("ipam routes changed: %v", ipam["routes"])
	}
	if !reflect.DeepEqual(plugins[1], orig["plugins"].([]any)[1]) {
		t.Errorf("portmap changed: %v", plugins[1])
	}
	if got["cniVersion"] != orig["cniVersion"] {
		t.Errorf("cniVersion = %v, want %v", got["cniVersion"], orig["cniVersion"])
	}
}

func TestRewriteConflistRejectsEmpty(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "empty.conflist")
	if err := os.WriteFile(conf, []byte(`{"cniVersion":"1.1.0","name":"x","plugins":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rewriteConflist(floorOptions{conf: conf, bridge: "b", subnet: "10.0.0.0/24"}, "/d"); err == nil {
		t.Error("a conflist without plugins was accepted")
	}
}
