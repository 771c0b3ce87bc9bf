package cri

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
)

// recordingStreams hands out fixed URLs and records the requests they were for.
type recordingStreams struct {
	exec   *runtimeapi.ExecRequest
	attach *runtimeapi.AttachRequest
	pf     *runtimeapi.PortForwardRequest
}

func (r *recordingStreams) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	r.exec = req
	return &runtimeapi.ExecResponse{Url: "http://127.0.0.1:1/exec/t"}, nil
}

func (r *recordingStreams) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	r.attach = req
	return &runtimeapi.AttachResponse{Url: "http://127.0.0.1:1/attach/t"}, nil
}

func (r *recordingStreams) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	r.pf = req
	return &runtimeapi.PortForwardResponse{Url: "http://127.0.0.1:1/portforward/t"}, nil
}

func TestStreamingRPCValidation(t *testing.T) {
	items := fixedContainers()
	items[0].Config.Stdin = true // c1aaa runs with stdin
	rs := &recordingStreams{}
	s := NewServer(Options{Config: config.Default(), Sandboxes: listedManager{items: fixedSandboxes()},
		Containers: listedContainers{items: items}, Streaming: rs})
	c := dial(t, s)
	ctx := context.Background()
	exec := func(r *runtimeapi.ExecRequest) error { _, err := c.Exec(ctx, r); return err }
	attach := func(r *runtimeapi.AttachRequest) error { _, err := c.Attach(ctx, r); return err }
	pf := func(r *runtimeapi.PortForwardRequest) error { _, err := c.PortForward(ctx, r); return err }
	sh := []string{"sh"}
	for _, tc := range []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"exec ok", func() error { return exec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: sh, Stdout: true}) }, codes.OK, ""},
		{"exec no id", func() error { return exec(&runtimeapi.ExecRequest{Cmd: sh, Stdout: true}) }, codes.InvalidArgument, "container_id"},
		{"exec no cmd", func() error { return exec(&runtimeapi.ExecRequest{ContainerId: "c1", Stdout: true}) }, codes.InvalidArgument, "cmd"},
		{"exec no stream", func() error { return exec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: sh}) }, codes.InvalidArgument, "stdin"},
		{"exec tty with stderr", func() error {
			return exec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: sh, Tty: true, Stdout: true, Stderr: true})
		}, codes.InvalidArgument, "stderr"},
		{"exec unknown", func() error { return exec(&runtimeapi.ExecRequest{ContainerId: "zzz", Cmd: sh, Stdout: true}) }, codes.NotFound, "zzz"},
		{"exec exited", func() error { return exec(&runtimeapi.ExecRequest{ContainerId: "c2", Cmd: sh, Stdout: true}) }, codes.FailedPrecondition, "c2aaa"},
		{"attach ok", func() error { return attach(&runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true}) }, codes.OK, ""},
		{"attach created", func() error { return attach(&runtimeapi.AttachRequest{ContainerId: "c3", Stdout: true}) }, codes.FailedPrecondition, "c3bbb"},
		{"attach no stream", func() error { return attach(&runtimeapi.AttachRequest{ContainerId: "c1"}) }, codes.InvalidArgument, "stdin"},
		{"pf ok", func() error { return pf(&runtimeapi.PortForwardRequest{PodSandboxId: "bbb", Port: []int32{80}}) }, codes.OK, ""},
		{"pf no id", func() error { return pf(&runtimeapi.PortForwardRequest{}) }, codes.InvalidArgument, "pod_sandbox_id"},
		{"pf bad port", func() error { return pf(&runtimeapi.PortForwardRequest{PodSandboxId: "bbb", Port: []int32{80, 70000}}) }, codes.InvalidArgument, "port[1]"},
		{"pf unknown", func() error { return pf(&runtimeapi.PortForwardRequest{PodSandboxId: "zzz"}) }, codes.NotFound, "zzz"},
		{"pf not ready", func() error { return pf(&runtimeapi.PortForwardRequest{PodSandboxId: "aaa222"}) }, codes.FailedPrecondition, "aaa222"},
	} {
		err := tc.call()
		if status.Code(err) != tc.code || (err != nil && !strings.Contains(err.Error(), tc.field)) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.code, tc.field)
		}
	}
	// The streaming server gets full IDs: the session reaches the object the RPC checked.
	if rs.exec.GetContainerId() != "c1aaa" || rs.attach.GetContainerId() != "c1aaa" || rs.pf.GetPodSandboxId() != "bbb333" {
		t.Errorf("streaming requests for %q, %q, %q; want the full IDs", rs.exec.GetContainerId(), rs.attach.GetContainerId(), rs.pf.GetPodSandboxId())
	}
	// A container created without stdin has none to attach to.
	items[0].Config.Stdin = false
	if err := attach(&runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "stdin") {
		t.Errorf("attach stdin to a container without: %v, want InvalidArgument naming stdin", err)
	}
}
