package cri

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

func TestContainerNamespaces(t *testing.T) {
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
		{"user namespace", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}, container.NamespaceOptions{}, "userns_options.mode"},
	}
	for _, tc := range tests {
		got, err := containerNamespaces(tc.in)
		if tc.field != "" {
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
