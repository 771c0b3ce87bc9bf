package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMonitorBinaryIn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, p string)
		found bool
	}{
		{"missing", func(*testing.T, string) {}, false},
		{"executable file", func(t *testing.T, p string) { write(t, p, 0o755) }, true},
		{"not executable", func(t *testing.T, p string) { write(t, p, 0o644) }, false},
		{"a directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, monitorBinaryName)
			tc.setup(t, p)
			got := monitorBinaryIn(dir)
			if tc.found && got != p || !tc.found && got != "" {
				t.Errorf("monitorBinaryIn = %q, want found=%v (%s)", got, tc.found, p)
			}
		})
	}
}

func write(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte("#!/bin/false\n"), mode); err != nil {
		t.Fatal(err)
	}
}
