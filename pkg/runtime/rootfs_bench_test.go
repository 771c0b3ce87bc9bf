package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// BenchmarkMountRootfs measures what CreateContainer pays for a container's rootfs without a
// user namespace: the directories and the overlay of a five-layer image. Removal is not
// counted.
func BenchmarkMountRootfs(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("mounting an overlay needs root")
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
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(ctrs, fmt.Sprint(i))
		if _, err := runtime.MountRootfs(base, layers, dir); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := runtime.RemoveRootfs(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
