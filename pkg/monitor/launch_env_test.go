package monitor

import (
	"slices"
	"testing"
)

func TestWithoutMemProfiling(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=memprofilerate=0"}},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"A=1", "GODEBUG=memprofilerate=0"}},
		{"GODEBUG kept", []string{"GODEBUG=x=1", "A=1"}, []string{"A=1", "GODEBUG=x=1,memprofilerate=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := withoutMemProfiling(tc.env); !slices.Equal(got, tc.want) {
				t.Errorf("withoutMemProfiling(%q) = %q, want %q", tc.env, got, tc.want)
			}
		})
	}
	if got := withoutMemProfiling(nil); !slices.Contains(got, "GODEBUG=memprofilerate=0") && !slices.ContainsFunc(got, func(s string) bool {
		return len(s) > 8 && s[:8] == "GODEBUG=" && s[len(s)-17:] == "memprofilerate=0"
	}) {
		t.Errorf("withoutMemProfiling(nil) = %q: no memprofilerate=0", got)
	}
}
