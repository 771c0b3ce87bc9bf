package image

import (
	"errors"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/store"
)

func TestParseReference(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in, want, registry string
	}{
		{"busybox", "docker.io/library/busybox:latest", "docker.io"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "docker.io"},
		{"docker.io/busybox", "docker.io/library/busybox:latest", "docker.io"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "docker.io"},
		{"user/app:v1", "docker.io/user/app:v1", "docker.io"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io"},
		{"127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000"},
		{"busybox@" + d, "docker.io/library/busybox@" + d, "docker.io"},
		{"gcr.io/x/y:tag@" + d, "gcr.io/x/y@" + d, "gcr.io"},
	}
	for _, tc := range tests {
		r, err := parseReference(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if r.String() != tc.want || r.registry != tc.registry {
			t.Errorf("%s = %s (registry %s), want %s (%s)", tc.in, r, r.registry, tc.want, tc.registry)
		}
	}
	for _, bad := range []string{"", "UPPER/case::x", "a@sha256:short"} {
		if _, err := parseReference(bad); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%q: error %v, want ErrInvalidArgument", bad, err)
		}
	}
}
