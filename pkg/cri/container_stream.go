package cri

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// StreamServer hands out the URLs of the streaming server; *streaming.Server is one.
type StreamServer interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

func (s *Server) streaming() (StreamServer, error) {
	if s.opts.Streaming == nil {
		return nil, fmt.Errorf("streaming: no streaming server configured: %w", store.ErrFailedPrecondition)
	}
	return s.opts.Streaming, nil
}

// Exec checks that the command can run in the container now and returns the URL of a
// one-shot exec session on the streaming server.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, invalidArg("cmd", "must not be empty")
	}
	if err := checkStreams(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return nil, err
	}
	c, srv, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	// The full ID: the session must reach this container even if the prefix stops
	// being unique before the client connects.
	r := proto.Clone(req).(*runtimeapi.ExecRequest)
	r.ContainerId = c.ID
	resp, err := srv.GetExec(r)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	return resp, nil
}

// Attach checks that the container runs (and takes stdin if asked for) and returns the
// URL of a one-shot attach session.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := checkStreams(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return nil, err
	}
	c, srv, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if req.GetStdin() && !c.Config.Stdin {
		// As containerd: the container's stdin was never opened, there is nothing to write to.
		return nil, invalidArg("stdin", "container %s was not created with stdin", c.ID)
	}
	r := proto.Clone(req).(*runtimeapi.AttachRequest)
	r.ContainerId = c.ID
	resp, err := srv.GetAttach(r)
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", c.ID, err)
	}
	return resp, nil
}

// PortForward checks that the pod is ready and returns the URL of a port-forward session;
// the ports are chosen by the client when it opens its streams.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	id := req.GetPodSandboxId()
	if id == "" {
		return nil, invalidArg("pod_sandbox_id", "must not be empty")
	}
	for i, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, invalidArg(fmt.Sprintf("port[%d]", i), "%d is not a TCP port", p)
		}
	}
	srv, err := s.streaming()
	if err != nil {
		return nil, err
	}
	sm, err := s.sandboxes()
	if err != nil {
		return nil, err
	}
	sb, err := sm.Get(id)
	if err != nil {
		return nil, fmt.Errorf("port forward: %w", err)
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("port forward: pod %s is %s, not ready: %w", sb.ID, sb.State, store.ErrFailedPrecondition)
	}
	r := proto.Clone(req).(*runtimeapi.PortForwardRequest)
	r.PodSandboxId = sb.ID
	resp, err := srv.GetPortForward(r)
	if err != nil {
		return nil, fmt.Errorf("port forward to pod %s: %w", sb.ID, err)
	}
	return resp, nil
}

// checkStreams applies the CRI's rules for the streams of Exec and Attach.
func checkStreams(stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return invalidArg("stdin", "one of stdin, stdout and stderr must be set")
	}
	if tty && stderr {
		// A terminal has one output: stderr cannot be told apart from stdout.
		return invalidArg("stderr", "must not be set with tty")
	}
	return nil
}

// runningContainer finds the container id names and checks that it runs.
func (s *Server) runningContainer(id string) (*container.Container, StreamServer, error) {
	if id == "" {
		return nil, nil, invalidArg("container_id", "must not be empty")
	}
	srv, err := s.streaming()
	if err != nil {
		return nil, nil, err
	}
	m, err := s.containers()
	if err != nil {
		return nil, nil, err
	}
	c, err := m.Get(id)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", id, err)
	}
	if c.State != container.StateRunning {
		return nil, nil, fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, store.ErrFailedPrecondition)
	}
	return c, srv, nil
}
