// Package cri is cri-mini's gRPC layer: request validation, translation between CRI messages and
// the domain packages, and the error-to-status mapping. It holds no runtime logic of its own.
package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
)

// RuntimeName is what Version reports as runtime_name.
const RuntimeName = "cri-mini"

// NetworkStatus tells whether the pod network is ready; a nil error means ready, otherwise the
// error says why not.
type NetworkStatus interface {
	Status(ctx context.Context) error
}

// Options wires the server to the domain services built in cmd/cri-mini.
type Options struct {
	// Version is the daemon's version, stamped at build time.
	Version string
	// Config is the effective configuration, reported by Status(verbose).
	Config config.Config
	// Network reports pod network readiness.
	Network NetworkStatus
	// Sandboxes runs the pod sandboxes behind the PodSandbox RPCs.
	Sandboxes SandboxManager
	// PodNetwork records the pod CIDR sent with UpdateRuntimeConfig.
	PodNetwork PodNetwork
	// Images is the image store behind the ImageService RPCs.
	Images ImageService
	// Containers runs the containers behind the Container RPCs.
	Containers ContainerManager
	// Streaming serves the Exec, Attach and PortForward sessions.
	Streaming StreamServer
	// PodInits reports the PID of a shared-PID pod's init (verbose PodSandboxStatus); may be nil.
	PodInits PodInitPids
	// PodUserNamespaces lets RunPodSandbox create pods with a user namespace of their own
	// (userns_options mode POD), and Status advertise user_namespaces. Off (the node cannot
	// idmap the container's filesystems), such requests are refused after validation.
	PodUserNamespaces bool
	// Events fans the managers' lifecycle events out to GetContainerEvents; nil gives the
	// server one of its own (whose subscribers then hear of nothing).
	Events *Events
}

// Server implements the CRI RuntimeService and ImageService. RPCs that are not implemented yet
// answer Unimplemented through the embedded types.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	opts   Options
	events *Events
}

// NewServer returns a server over the given services.
func NewServer(opts Options) *Server {
	s := &Server{opts: opts, events: opts.Events}
	if s.events == nil {
		s.events = NewEvents(0)
	}
	s.events.bind(s)
	return s
}

// Register installs both CRI services on g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}
