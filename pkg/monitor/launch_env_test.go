package monitor

import (
	"slices"
	"strings"
	"testing"
)

func TestLeanRuntimeEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"nothing set", []string{"A=1"}, []string{"A=1", "GODEBUG=memprofilerate=0", "GOMAXPROCS=1"}},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"A=1", "GODEBUG=memprofilerate=0", "GOMAXPROCS=1"}},
		{"GODEBUG extended", []string{"GODEBUG=x=1", "A=1"}, []string{"A=1", "GODEBUG=x=1,memprofilerate=0", "GOMAXPROCS=1"}},
		{"GOMAXPROCS kept", []string{"GOMAXPROCS=2"}, []string{"GOMAXPROCS=2", "GODEBUG=memprofilerate=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := leanRuntimeEnv(tc.env); !slices.Equal(got, tc.want) {
				t.Errorf("leanRuntimeEnv(%q) = %q, want %q", tc.env, got, tc.want)
			}
		})
	}
	got := leanRuntimeEnv(nil)
	if !slices.ContainsFunc(got, func(s string) bool {
		return strings.HasPrefix(s, "GODEBUG=") && strings.HasSuffix(s, "memprofilerate=0")
	}) {
		t.Errorf("leanRuntimeEnv(nil) = %q: no memprofilerate=0", got)
	}
}
