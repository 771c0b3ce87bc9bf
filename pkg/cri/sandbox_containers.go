package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
)

// PodInitPids reports the PID of a pod's init; *sandbox.PodInits is one.
type PodInitPids interface {
	// Pid returns the PID of the running init of the sandbox, or 0.
	Pid(sandboxID string) int
}

// podContainerStatuses are the statuses of the pod's containers that PodSandboxStatus
// carries for the evented PLEG, from the container manager's memory. The sandbox manager
// does not know containers: the two meet here.
func (s *Server) podContainerStatuses(podID string) []*runtimeapi.ContainerStatus {
	if s.opts.Containers == nil {
		return nil
	}
	var out []*runtimeapi.ContainerStatus
	for _, c := range s.opts.Containers.List() {
		if c.PodSandboxID == podID {
			out = append(out, toContainerStatus(c))
		}
	}
	return out
}

// withInit returns sb as the CRI reports it, and the pid of its init (0 when it has none).
// A READY pod that shares one PID namespace is reported NOTREADY once its init is gone
// (killed from outside, OOM): its containers died with the namespace and no new one can
// join it, so kubelet must stop it and make a new sandbox.
func (s *Server) withInit(sb *sandbox.Sandbox) (*sandbox.Sandbox, int) {
	if s.opts.PodInits == nil || sb.Config.PIDMode != sandbox.ModePod {
		return sb, 0
	}
	pid := s.opts.PodInits.Pid(sb.ID)
	if pid == 0 && sb.State == sandbox.StateReady {
		c := *sb
		c.State = sandbox.StateNotReady
		return &c, 0
	}
	return sb, pid
}

// withInitState is withInit for the list RPCs, which need no pid.
func (s *Server) withInitState(sb *sandbox.Sandbox) *sandbox.Sandbox {
	sb, _ = s.withInit(sb)
	return sb
}
