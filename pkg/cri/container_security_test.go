package cri

import (
	"context"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/container"
)

func TestSecurityContextTranslation(t *testing.T) {
	cases := []struct {
		name      string
		sc        *runtimeapi.LinuxContainerSecurityContext
		want      container.Config
		wantField string // the field an InvalidArgument must name
	}{
		{name: "none", sc: nil},
		{name: "capabilities in any spelling",
			sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
				AddCapabilities: []string{"net_admin", "CAP_SYS_TIME"}, DropCapabilities: []string{"all"},
				AddAmbientCapabilities: []string{"NET_BIND_SERVICE"},
			}},
			want: container.Config{CapAdd: []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}, CapDrop: []string{"ALL"},
				AmbientCaps: []string{"CAP_NET_BIND_SERVICE"}}},
		{name: "flags and paths",
			sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, NoNewPrivs: true, ReadonlyRootfs: true,
				MaskedPaths: []string{"/a"}, ReadonlyPaths: []string{"/b"},
				SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			want: container.Config{Privileged: true, NoNewPrivs: true, ReadonlyRootfs: true,
				MaskedPaths: []string{"/a"}, ReadonlyPaths: []string{"/b"}, SupplementalGroupsStrict: true}},
		{name: "unknown added capability",
			sc:        &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CHOWN", "FLY"}}},
			wantField: "config.linux.security_context.capabilities.add_capabilities[1]"},
		{name: "unknown dropped capability",
			sc:        &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"CAP_"}}},
			wantField: "config.linux.security_context.capabilities.drop_capabilities[0]"},
		{name: "ALL is not an ambient capability",
			sc:        &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddAmbientCapabilities: []string{"ALL"}}},
			wantField: "config.linux.security_context.capabilities.add_ambient_capabilities[0]"},
		{name: "unknown supplemental groups policy",
			sc:        &runtimeapi.LinuxContainerSecurityContext{SupplementalGroupsPolicy: 7},
			wantField: "config.linux.security_context.supplemental_groups_policy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := containerConfig(&runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "n"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
				Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc},
			})
			if tc.wantField != "" {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantField+":") {
					t.Fatalf("error %v, want InvalidArgument naming %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Name, tc.want.Image = "n", "busybox"
			if !reflect.DeepEqual(cfg, tc.want) {
				t.Errorf("config\n%+v\nwant\n%+v", cfg, tc.want)
			}
		})
	}
}

func TestContainerStatusUser(t *testing.T) {
	cases := []struct {
		name string
		user specs.User
		want *runtimeapi.LinuxContainerUser
	}{
		{name: "root", want: &runtimeapi.LinuxContainerUser{SupplementalGroups: []int64{0}}},
		{name: "groups with the primary one repeated",
			user: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1234, 50000}},
			want: &runtimeapi.LinuxContainerUser{Uid: 1000, Gid: 1000, SupplementalGroups: []int64{1000, 1234, 50000}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &container.Container{Spec: &specs.Spec{Process: &specs.Process{User: tc.user}}}
			got := toContainerStatus(c).GetUser().GetLinux()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("user %v, want %v", got, tc.want)
			}
		})
	}
	if u := toContainerStatus(&container.Container{}).GetUser(); u != nil {
		t.Errorf("a container without a spec reports user %v", u)
	}
}

func TestRecursiveReadOnlyMountTranslation(t *testing.T) {
	cases := []struct {
		name  string
		mount *runtimeapi.Mount
		ok    bool
	}{
		{name: "read-only private", ok: true, mount: &runtimeapi.Mount{ContainerPath: "/m", HostPath: "/h", Readonly: true, RecursiveReadOnly: true}},
		{name: "writable", mount: &runtimeapi.Mount{ContainerPath: "/m", HostPath: "/h", RecursiveReadOnly: true}},
		{name: "host to container", mount: &runtimeapi.Mount{ContainerPath: "/m", HostPath: "/h", Readonly: true, RecursiveReadOnly: true,
			Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
		{name: "bidirectional", mount: &runtimeapi.Mount{ContainerPath: "/m", HostPath: "/h", Readonly: true, RecursiveReadOnly: true,
			Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := containerConfig(&runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "n"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
				Mounts: []*runtimeapi.Mount{tc.mount},
			})
			if !tc.ok {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "config.mounts[0].recursive_read_only:") {
					t.Fatalf("error %v, want InvalidArgument naming config.mounts[0].recursive_read_only", err)
				}
				return
			}
			if err != nil || !cfg.Mounts[0].RecursiveReadOnly {
				t.Fatalf("config %+v, %v", cfg.Mounts, err)
			}
		})
	}
}

func TestStatusAdvertisesSecurityFeatures(t *testing.T) {
	c := dial(t, NewServer(Options{Config: config.Default()}))
	resp, err := c.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Error("supplemental_groups_policy not advertised")
	}
	for _, h := range resp.GetRuntimeHandlers() {
		if !h.GetFeatures().GetRecursiveReadOnlyMounts() {
			t.Errorf("handler %q does not advertise recursive_read_only_mounts", h.GetName())
		}
	}
}
