package container

import (
	"context"
	"os"
	"sync"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// sealedExe is the daemon's one sealed memfd copy of the monitor's binary, made on the first
// monitor launch and kept: every monitor runs from it, and each monitor's container inits
// and exec helpers reuse it (runtime.SealedExecutable) instead of copying the ~18 MB binary
// per spawn. Its pages are shared by all monitors; a new daemon run makes a new copy, which
// the monitors of the previous run keep alive until they exit.
type sealedExe struct {
	mu sync.Mutex
	f  *os.File
}

// get returns the sealed copy of path (this executable when empty), made on the first call.
func (s *sealedExe) get(path string) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		return s.f, nil
	}
	f, err := runtime.SealedExecutable(path)
	if err != nil {
		return nil, err // not kept: the next launch tries again
	}
	s.f = f
	return f, nil
}

func (s *sealedExe) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
}

// execExe is the sealed copy of the daemon's own binary that exec helpers start from, made
// once instead of per exec. Without it (the copy failed) each exec makes its own.
func (m *Manager) execExe(ctx context.Context) *os.File {
	f, err := m.self.get("")
	if err != nil {
		klog.FromContext(ctx).Error(err, "Sealing the binary for exec helpers failed; each exec copies it")
		return nil
	}
	return f
}
