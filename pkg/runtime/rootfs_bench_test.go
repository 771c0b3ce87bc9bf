package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/idmap/idmaptest"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// BenchmarkMountRootfs measures what CreateContainer pays for a container's rootfs without a
// user namespace: the directories and the overlay of a five-layer image. Removal is not
// counted.
func BenchmarkMountRootfs(b *testing.B) { benchmarkMountRootfs(b, false) }

// BenchmarkMountRootfsUserNS is BenchmarkMountRootfs for a pod with a user namespace: every
// layer idmapped.
func BenchmarkMountRootfsUserNS(b *testing.B) { benchmarkMountRootfs(b, true) }

func benchmarkMountRootfs(b *testing.B, userns bool) {
	if os.Geteuid() != 0 {
		b.Skip("mounting an overlay needs root")
	}
	var u runtime.UserNamespace
	if userns {
		ns := idmaptest.NewUserNS(b, 1<<20, 65536)
		u = runtime.UserNamespace{File: ns.File, UID: 1 << 20, GID: 1 << 20}
	}
	base := b.TempDir()
	var layers []string
	for i := 0; i < 5; i++ {
		l := fmt.Sprintf("layer-%d", i)
		if err := os.MkdirAll(filepath.Join(base, l, "etc"), 0o755); err != nil {
			b.Fatal(err)
		}
		layers = append(layers, l)
	}
	ctrs := b.TempDir()
	if userns {
		ctrs = idmaptest.TempDir(b)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(ctrs, fmt.Sprint(i))
		var err error
		if userns {
			_, err = runtime.MountRootfsUserNS(base, layers, dir, u)
		} else {
			_, err = runtime.MountRootfs(base, layers, dir)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := runtime.RemoveRootfs(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
