package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`-A POSTROUTING -s 10.236.1.2/32 -m comment --comment "name: \"cribench-floor\" id: \"x-1\"" -j CNI-abc`,
			[]string{"-A", "POSTROUTING", "-s", "10.236.1.2/32", "-m", "comment", "--comment",
				`name: "cribench-floor" id: "x-1"`, "-j", "CNI-abc"}},
		{`-A CNI-abc ! -d 224.0.0.0/4 -j MASQUERADE`,
			[]string{"-A", "CNI-abc", "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"}},
		{`-A X --comment "a \\ b"`, []string{"-A", "X", "--comment", `a \ b`}},
	} {
		if got := splitRule(tc.line); !slices.Equal(got, tc.want) {
			t.Errorf("splitRule(%s) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

func TestRemoveNATRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change the nat table")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("no iptables")
	}
	const netName, chain = "cribench-natclean-test", "CNI-cribench-natclean"
	comment := fmt.Sprintf(`name: "%s" id: "x"`, netName)
	ipt := func(args ...string) error {
		out, err := exec.Command("iptables", append([]string{"-t", "nat"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("iptables %v: %v: %s", args, err, out)
		}
		return nil
	}
	// What the bridge plugin leaves when its DEL stops half way: a chain and the jump to it.
	for _, args := range [][]string{
		{"-N", chain},
		{"-A", chain, "-d", "192.0.2.0/24", "-m", "comment", "--comment", comment, "-j", "ACCEPT"},
		{"-A", "POSTROUTING", "-s", "192.0.2.7/32", "-m", "comment", "--comment", comment, "-j", chain},
	} {
		if err := ipt(args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = ipt("-D", "POSTROUTING", "-s", "192.0.2.7/32", "-m", "comment", "--comment", comment, "-j", chain)
		_ = ipt("-F", chain)
		_ = ipt("-X", chain)
	})
	if err := removeNATRules(netName); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("iptables", "-t", "nat", "-S").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), netName) || strings.Contains(string(out), chain) {
		t.Errorf("rules of %s left:\n%s", netName, out)
	}
}
