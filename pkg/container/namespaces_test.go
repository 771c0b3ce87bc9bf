package container

import (
	"errors"
	"reflect"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

type fakePodInits map[string]string

func (f fakePodInits) PIDNamespace(id string) (string, error) {
	if p, ok := f[id]; ok {
		return p, nil
	}
	return "", store.ErrFailedPrecondition
}

func TestNamespacePaths(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, openDB(t, dir), dir)
	m.o.PodInits = fakePodInits{"shared": "/proc/42/ns/pid"}
	m.byID["running"] = &entry{rec: Container{ID: "running", PodSandboxID: "shared", State: StateRunning, Pid: 77}}
	m.byID["created"] = &entry{rec: Container{ID: "created", PodSandboxID: "shared", State: StateCreated}}
	m.byID["elsewhere"] = &entry{rec: Container{ID: "elsewhere", PodSandboxID: "other", State: StateRunning, Pid: 78}}
	pod := func(id string, pid sandbox.NamespaceMode) *sandbox.Sandbox {
		return &sandbox.Sandbox{ID: id, Config: sandbox.Config{PIDMode: pid},
			NetNSPath: "/pins/net", IPCNSPath: "/pins/ipc", UTSNSPath: "/pins/uts", ShmPath: "/pins/shm"}
	}
	full := runtime.SandboxPaths{NetNS: "/pins/net", IPCNS: "/pins/ipc", UTSNS: "/pins/uts", Shm: "/pins/shm"}
	idsOf := func(host uint32) *sandbox.UserNamespace {
		m := []sandbox.IDMapping{{ContainerID: 0, HostID: host, Length: 65536}}
		return &sandbox.UserNamespace{UIDMappings: m, GIDMappings: m}
	}
	userns := func() *sandbox.Sandbox {
		sb := pod("u", sandbox.ModeContainer)
		sb.Config.UserNS, sb.UsernsPath = idsOf(1<<20), "/pins/user"
		return sb
	}
	inUserns := full
	inUserns.UserNS = "/pins/user"
	inUserns.UIDMappings = []runtime.IDMapping{{ContainerID: 0, HostID: 1 << 20, Size: 65536}}
	inUserns.GIDMappings = inUserns.UIDMappings
	with := func(f func(p *runtime.SandboxPaths)) runtime.SandboxPaths { p := full; f(&p); return p }
	tests := []struct {
		name    string
		sb      *sandbox.Sandbox
		o       NamespaceOptions
		want    runtime.SandboxPaths
		wantErr error
	}{
		{"own PID", pod("p", sandbox.ModeContainer), NamespaceOptions{PID: sandbox.ModeContainer}, full, nil},
		{"pod PID", pod("shared", sandbox.ModePod), NamespaceOptions{}, with(func(p *runtime.SandboxPaths) { p.PIDNS = "/proc/42/ns/pid" }), nil},
		{"pod PID, init gone", pod("gone", sandbox.ModePod), NamespaceOptions{}, runtime.SandboxPaths{}, store.ErrFailedPrecondition},
		{"pod PID of a host-PID pod", pod("h", sandbox.ModeNode), NamespaceOptions{}, with(func(p *runtime.SandboxPaths) { p.HostPID = true }), nil},
		{"pod PID without a shared one", pod("c", sandbox.ModeContainer), NamespaceOptions{}, full, nil},
		{"host PID", pod("p", sandbox.ModeContainer), NamespaceOptions{PID: sandbox.ModeNode}, with(func(p *runtime.SandboxPaths) { p.HostPID = true }), nil},
		{"target", pod("shared", sandbox.ModePod), NamespaceOptions{PID: sandbox.ModeTarget, TargetID: "running"}, with(func(p *runtime.SandboxPaths) { p.PIDNS = "/proc/77/ns/pid" }), nil},
		{"target not running", pod("shared", sandbox.ModePod), NamespaceOptions{PID: sandbox.ModeTarget, TargetID: "created"}, runtime.SandboxPaths{}, store.ErrFailedPrecondition},
		{"target missing", pod("shared", sandbox.ModePod), NamespaceOptions{PID: sandbox.ModeTarget, TargetID: "nope"}, runtime.SandboxPaths{}, store.ErrNotFound},
		{"target in another pod", pod("shared", sandbox.ModePod), NamespaceOptions{PID: sandbox.ModeTarget, TargetID: "elsewhere"}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"target empty", pod("shared", sandbox.ModePod), NamespaceOptions{PID: sandbox.ModeTarget}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"host network", pod("p", sandbox.ModeContainer), NamespaceOptions{Network: sandbox.ModeNode, PID: sandbox.ModeContainer}, with(func(p *runtime.SandboxPaths) { p.NetNS, p.UTSNS = "", "" }), nil},
		{"host IPC", pod("p", sandbox.ModeContainer), NamespaceOptions{IPC: sandbox.ModeNode, PID: sandbox.ModeContainer}, with(func(p *runtime.SandboxPaths) { p.IPCNS, p.Shm = "", "" }), nil},
		{"container network", pod("p", sandbox.ModeContainer), NamespaceOptions{Network: sandbox.ModeContainer, PID: sandbox.ModeContainer}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"target IPC", pod("p", sandbox.ModeContainer), NamespaceOptions{IPC: sandbox.ModeTarget, PID: sandbox.ModeContainer}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		// A pod with a user namespace: its containers are in it, and cannot leave it.
		{"pod userns followed", userns(), NamespaceOptions{PID: sandbox.ModeContainer}, inUserns, nil},
		{"pod userns repeated", userns(), NamespaceOptions{PID: sandbox.ModeContainer, User: &UserNamespaceOption{Mode: sandbox.ModePod, Mappings: idsOf(1 << 20)}}, inUserns, nil},
		{"pod userns, other mappings", userns(), NamespaceOptions{PID: sandbox.ModeContainer, User: &UserNamespaceOption{Mode: sandbox.ModePod, Mappings: idsOf(2 << 20)}}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"pod userns, no mappings", userns(), NamespaceOptions{PID: sandbox.ModeContainer, User: &UserNamespaceOption{Mode: sandbox.ModePod}}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"pod userns, host userns", userns(), NamespaceOptions{PID: sandbox.ModeContainer, User: &UserNamespaceOption{Mode: sandbox.ModeNode}}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"pod userns, host network", userns(), NamespaceOptions{Network: sandbox.ModeNode, PID: sandbox.ModeContainer}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"pod userns, host IPC", userns(), NamespaceOptions{IPC: sandbox.ModeNode, PID: sandbox.ModeContainer}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"pod userns, host PID", userns(), NamespaceOptions{PID: sandbox.ModeNode}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
		{"host userns asked", pod("p", sandbox.ModeContainer), NamespaceOptions{PID: sandbox.ModeContainer, User: &UserNamespaceOption{Mode: sandbox.ModeNode}}, full, nil},
		{"pod userns asked, pod has none", pod("p", sandbox.ModeContainer), NamespaceOptions{PID: sandbox.ModeContainer, User: &UserNamespaceOption{Mode: sandbox.ModePod, Mappings: idsOf(1 << 20)}}, runtime.SandboxPaths{}, store.ErrInvalidArgument},
	}
	for _, tc := range tests {
		got, err := m.namespacePaths(tc.sb, tc.o)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: err %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
