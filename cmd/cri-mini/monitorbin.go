package main

import (
	"os"
	"path/filepath"
)

// monitorBinaryName is the lean monitor binary that `make build` and `make install` put
// next to cri-mini (cmd/cri-mini-monitor).
const monitorBinaryName = "cri-mini-monitor"

// findMonitorBinary returns the lean monitor binary next to this executable, or "" when
// there is none: monitors then run this binary's own `monitor` subcommand.
func findMonitorBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return monitorBinaryIn(filepath.Dir(exe))
}

// monitorBinaryIn returns dir's executable cri-mini-monitor, or "".
func monitorBinaryIn(dir string) string {
	p := filepath.Join(dir, monitorBinaryName)
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return ""
	}
	return p
}
