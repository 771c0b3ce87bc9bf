package cri

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/seccomp"
)

func TestContainerSeccompTranslation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sc       *runtimeapi.LinuxContainerSecurityContext
		want     *seccomp.Profile
		badField string
	}{
		{name: "no security context"},
		{name: "nil profile", sc: &runtimeapi.LinuxContainerSecurityContext{}},
		{name: "runtime default", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}},
			want: &seccomp.Profile{Kind: seccomp.RuntimeDefault}},
		{name: "unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}},
		{name: "localhost", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/p.json"}},
			want: &seccomp.Profile{Kind: seccomp.Localhost, Path: "/p.json"}},
		{name: "localhost relative", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p.json"}},
			badField: "seccomp.localhost_ref"},
		{name: "localhost empty", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost}},
			badField: "seccomp.localhost_ref"},
		{name: "unknown type", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: 42}},
			badField: "seccomp.profile_type"},
		{name: "path runtime/default", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "runtime/default"},
			want: &seccomp.Profile{Kind: seccomp.RuntimeDefault}},
		{name: "path unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "unconfined"}},
		{name: "path localhost", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "localhost//p.json"},
			want: &seccomp.Profile{Kind: seccomp.Localhost, Path: "/p.json"}},
		{name: "path localhost relative", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "localhost/p.json"},
			badField: "seccomp_profile_path"},
		{name: "path unknown", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "strict"},
			badField: "seccomp_profile_path"},
		{name: "field wins over path", sc: &runtimeapi.LinuxContainerSecurityContext{
			Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, SeccompProfilePath: "runtime/default"}},
		{name: "privileged", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Seccomp: &runtimeapi.SecurityProfile{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := containerConfig(&runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "n"},
				Image:    &runtimeapi.ImageSpec{Image: "busybox"},
				Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc},
			})
			if tc.badField != "" {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.badField) {
					t.Fatalf("got %v, want InvalidArgument naming %s", err, tc.badField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg.Seccomp == nil) != (tc.want == nil) || (cfg.Seccomp != nil && *cfg.Seccomp != *tc.want) {
				t.Errorf("seccomp %+v, want %+v", cfg.Seccomp, tc.want)
			}
		})
	}
}
