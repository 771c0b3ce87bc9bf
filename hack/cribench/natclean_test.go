package main

import (
	"slices"
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
