package cri

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

func TestContainerNamespaces(t *testing.T) {
	ids := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1 << 16, Length: 1 << 16}}
	tests := []struct {
		name  string
		in    *runtimeapi.NamespaceOption
		want  container.NamespaceOptions
		field string // the InvalidArgument's field, "" for success
	}{
		{"unset is the pod's", nil, container.NamespaceOptions{}, ""},
		{"host everything", &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE},
			container.NamespaceOptions{Network: sandbox.ModeNode, IPC: sandbox.ModeNode, PID: sandbox.ModeNode}, ""},
		{"own PID", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, container.NamespaceOptions{PID: sandbox.ModeContainer}, ""},
		{"target", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "abc"},
			container.NamespaceOptions{PID: sandbox.ModeTarget, TargetID: "abc"}, ""},
		{"target without id", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}, container.NamespaceOptions{}, "target_id"},
		{"target id without target mode is ignored", &runtimeapi.NamespaceOption{TargetId: "abc"}, container.NamespaceOptions{}, ""},
		{"unknown mode", &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode(9)}, container.NamespaceOptions{}, "namespace_options.ipc"},
		{"node user namespace", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
			container.NamespaceOptions{User: &container.UserNamespaceOption{Mode: sandbox.ModeNode}}, ""},
		{"pod user namespace", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: ids, Gids: ids}},
			container.NamespaceOptions{User: &container.UserNamespaceOption{Mode: sandbox.ModePod, Mappings: &sandbox.UserNamespace{
				UIDMappings: []sandbox.IDMapping{{HostID: 1 << 16, Length: 1 << 16}}, GIDMappings: []sandbox.IDMapping{{HostID: 1 << 16, Length: 1 << 16}}}}}, ""},
		{"container user namespace", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}, container.NamespaceOptions{}, "userns_options.mode"},
		{"target user namespace", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}}, container.NamespaceOptions{}, "userns_options.mode"},
		{"null mapping", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{nil}}}, container.NamespaceOptions{}, "userns_options.uids[0]"},
	}
	for _, tc := range tests {
		got, err := containerNamespaces(tc.in)
		if tc.field != "" {
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

// TestIdmappedMounts: kubelet gives every mount of a pod with a user namespace the pod's
// mappings; they become idmapped mounts, and other mappings are refused.
func TestIdmappedMounts(t *testing.T) {
	ids := func(host uint32) []*runtimeapi.IDMapping {
		return []*runtimeapi.IDMapping{{ContainerId: 0, HostId: host, Length: 1 << 16}}
	}
	podUser := &container.UserNamespaceOption{Mode: sandbox.ModePod, Mappings: &sandbox.UserNamespace{
		UIDMappings: []sandbox.IDMapping{{HostID: 1 << 16, Length: 1 << 16}}, GIDMappings: []sandbox.IDMapping{{HostID: 1 << 16, Length: 1 << 16}}}}
	tests := []struct {
		name   string
		mounts []*runtimeapi.Mount
		user   *container.UserNamespaceOption
		want   []bool // IDMapped of each mount
		field  string
	}{
		{"no mappings", []*runtimeapi.Mount{{ContainerPath: "/a"}}, nil, []bool{false}, ""},
		{"the pod's mappings", []*runtimeapi.Mount{{ContainerPath: "/a", UidMappings: ids(1 << 16), GidMappings: ids(1 << 16)}, {ContainerPath: "/b"}}, podUser, []bool{true, false}, ""},
		{"other mappings", []*runtimeapi.Mount{{ContainerPath: "/a", UidMappings: ids(2 << 16), GidMappings: ids(1 << 16)}}, podUser, nil, "config.mounts[0].uid_mappings"},
		{"gid mappings only", []*runtimeapi.Mount{{ContainerPath: "/a", GidMappings: ids(1 << 16)}}, podUser, nil, "config.mounts[0].uid_mappings"},
		{"no user namespace", []*runtimeapi.Mount{{ContainerPath: "/a", UidMappings: ids(1 << 16), GidMappings: ids(1 << 16)}}, nil, nil, "config.mounts[0].uid_mappings"},
		{"host user namespace", []*runtimeapi.Mount{{ContainerPath: "/a", UidMappings: ids(1 << 16), GidMappings: ids(1 << 16)}}, &container.UserNamespaceOption{Mode: sandbox.ModeNode}, nil, "config.mounts[0].uid_mappings"},
	}
	for _, tc := range tests {
		out := make([]runtime.Mount, len(tc.mounts))
		err := idmappedMounts(tc.mounts, tc.user, out)
		if tc.field != "" {
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		for i, w := range tc.want {
			if out[i].IDMapped != w {
				t.Errorf("%s: mount %d idmapped %v, want %v", tc.name, i, out[i].IDMapped, w)
			}
		}
	}
}
