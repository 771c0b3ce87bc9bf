package container

import (
	"context"
	"os"

	"k8s.io/klog/v2"
)

// execExe is the sealed binary exec helpers start from: the monitors' one (cri-mini-monitor
// has the exec-helper subcommand), made once instead of per exec. Without it (the copy
// failed) each exec makes its own.
func (m *Manager) execExe(ctx context.Context) *os.File {
	f, err := m.o.MonitorBinary.Get()
	if err != nil {
		klog.FromContext(ctx).Error(err, "Sealing the binary for exec helpers failed; each exec copies it")
		return nil
	}
	return f
}
