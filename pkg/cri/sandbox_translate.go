package cri

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// SandboxManager runs the pod sandboxes; *sandbox.Manager implements it. Get and List must
// answer from memory (Status and List RPCs never wait on disk, CNI or a monitor).
type SandboxManager interface {
	Run(ctx context.Context, c sandbox.Config) (*sandbox.Sandbox, error)
	Stop(ctx context.Context, idOrPrefix string) error
	Remove(ctx context.Context, idOrPrefix string) error
	Get(idOrPrefix string) (*sandbox.Sandbox, error)
	List() []*sandbox.Sandbox
	UpdateResources(ctx context.Context, idOrPrefix string, res *sandbox.Resources) error
}

// PodNetwork records the node's pod CIDR that kubelet sends with UpdateRuntimeConfig;
// *cni.Network implements it.
type PodNetwork interface {
	SetPodCIDR(cidr string)
}

// sandboxes returns the configured manager, or an error saying the daemon was built
// without one (only possible in tests that wire a partial server).
func (s *Server) sandboxes() (SandboxManager, error) {
	if s.opts.Sandboxes == nil {
		return nil, fmt.Errorf("pod sandboxes: no sandbox manager configured: %w", store.ErrFailedPrecondition)
	}
	return s.opts.Sandboxes, nil
}

// defaultRuntimeHandler is the only runtime handler: the built-in runtime.
const defaultRuntimeHandler = ""

// checkRuntimeHandler refuses any handler but the default. containerd answers an unknown
// handler with an error naming it; kubelet only sends a handler chosen from a RuntimeClass,
// so NotFound tells the operator the RuntimeClass names something this node lacks.
func checkRuntimeHandler(h string) error {
	if h != defaultRuntimeHandler {
		return fmt.Errorf("runtime_handler %q: no such runtime handler (only the default \"\" is served): %w", h, store.ErrNotFound)
	}
	return nil
}

// sandboxConfig translates a RunPodSandbox config. It checks only what sandbox.Config
// cannot express (nil messages, unsupported options); the manager validates the values.
func sandboxConfig(cfg *runtimeapi.PodSandboxConfig, handler string) (sandbox.Config, error) {
	if cfg == nil {
		return sandbox.Config{}, invalidArg("config", "required")
	}
	md := cfg.GetMetadata()
	if md == nil {
		return sandbox.Config{}, invalidArg("config.metadata", "required")
	}
	for _, f := range []struct{ field, v string }{
		{"config.metadata.name", md.GetName()},
		{"config.metadata.namespace", md.GetNamespace()},
		{"config.metadata.uid", md.GetUid()},
	} {
		if f.v == "" {
			return sandbox.Config{}, invalidArg(f.field, "must not be empty")
		}
	}
	c := sandbox.Config{
		Name:           md.GetName(),
		Namespace:      md.GetNamespace(),
		UID:            md.GetUid(),
		Attempt:        md.GetAttempt(),
		Hostname:       cfg.GetHostname(),
		LogDir:         cfg.GetLogDirectory(),
		Labels:         maps.Clone(cfg.GetLabels()),
		Annotations:    maps.Clone(cfg.GetAnnotations()),
		RuntimeHandler: handler,
	}
	if d := cfg.GetDnsConfig(); d != nil {
		c.DNS = &sandbox.DNSConfig{
			Servers:  slices.Clone(d.GetServers()),
			Searches: slices.Clone(d.GetSearches()),
			Options:  slices.Clone(d.GetOptions()),
		}
	}
	for i, pm := range cfg.GetPortMappings() {
		if pm == nil {
			return sandbox.Config{}, invalidArg(fmt.Sprintf("config.port_mappings[%d]", i), "null entry")
		}
		c.PortMappings = append(c.PortMappings, sandbox.PortMapping{
			Protocol:      pm.GetProtocol().String(),
			ContainerPort: pm.GetContainerPort(),
			HostPort:      pm.GetHostPort(),
			HostIP:        pm.GetHostIp(),
		})
	}
	linux := cfg.GetLinux()
	c.CgroupParent = linux.GetCgroupParent()
	c.Sysctls = maps.Clone(linux.GetSysctls())
	c.Privileged = linux.GetSecurityContext().GetPrivileged()
	nsOpts := linux.GetSecurityContext().GetNamespaceOptions()
	c.NetworkMode = sandbox.NamespaceMode(nsOpts.GetNetwork())
	c.IPCMode = sandbox.NamespaceMode(nsOpts.GetIpc())
	c.PIDMode = sandbox.NamespaceMode(nsOpts.GetPid())
	userns, err := podUserns(nsOpts.GetUsernsOptions())
	if err != nil {
		return sandbox.Config{}, err
	}
	c.UserNS = userns
	res, err := podResources(linux.GetResources(), linux.GetOverhead())
	if err != nil {
		return sandbox.Config{}, invalidArg("config.linux.resources", "%v", err)
	}
	c.Resources = res
	return c, nil
}

// podResources turns kubelet's pod-level resources into the pod cgroup's limits: the sum of
// the containers' resources plus the pod overhead (what kubelet itself gives the pod cgroup).
// Overhead alone is no limit: without the containers' part, applying it would starve the pod.
// Unlimited (zero) stays unlimited whatever the overhead.
func podResources(res, overhead *runtimeapi.LinuxContainerResources) (*sandbox.Resources, error) {
	if res == nil {
		return nil, nil
	}
	for _, v := range []struct {
		name string
		n    int64
	}{
		{"cpu_shares", res.GetCpuShares()}, {"cpu_period", res.GetCpuPeriod()},
		{"overhead.cpu_shares", overhead.GetCpuShares()}, {"overhead.cpu_period", overhead.GetCpuPeriod()},
		{"overhead.cpu_quota", overhead.GetCpuQuota()}, {"overhead.memory_limit_in_bytes", overhead.GetMemoryLimitInBytes()},
	} {
		if v.n < 0 {
			return nil, fmt.Errorf("%s %d is negative", v.name, v.n)
		}
	}
	r := &sandbox.Resources{
		CPUShares:   uint64(res.GetCpuShares()),
		CPUQuota:    res.GetCpuQuota(),
		CPUPeriod:   uint64(res.GetCpuPeriod()),
		MemoryLimit: res.GetMemoryLimitInBytes(),
		CpusetCPUs:  res.GetCpusetCpus(),
		CpusetMems:  res.GetCpusetMems(),
	}
	if overhead == nil {
		return r, nil
	}
	if r.CPUShares > 0 {
		r.CPUShares += uint64(overhead.GetCpuShares())
	}
	if r.MemoryLimit > 0 {
		r.MemoryLimit += overhead.GetMemoryLimitInBytes()
	}
	// Quotas add up only over the same period; an overhead with another period is scaled.
	if r.CPUQuota > 0 && overhead.GetCpuQuota() > 0 {
		q := overhead.GetCpuQuota()
		if op := overhead.GetCpuPeriod(); op > 0 && r.CPUPeriod > 0 && uint64(op) != r.CPUPeriod {
			q = q * int64(r.CPUPeriod) / op
		}
		r.CPUQuota += q
	}
	return r, nil
}

// podSandboxState maps the domain state; a sandbox whose creation is still under way is
// never visible, so anything not READY is NOTREADY.
func podSandboxState(st sandbox.State) runtimeapi.PodSandboxState {
	if st == sandbox.StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func podSandboxMetadata(c *sandbox.Config) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: c.Name, Uid: c.UID, Namespace: c.Namespace, Attempt: c.Attempt}
}

// toPodSandbox is the ListPodSandbox view of a sandbox.
func toPodSandbox(sb *sandbox.Sandbox) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id:             sb.ID,
		Metadata:       podSandboxMetadata(&sb.Config),
		State:          podSandboxState(sb.State),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         maps.Clone(sb.Config.Labels),
		Annotations:    maps.Clone(sb.Config.Annotations),
		RuntimeHandler: sb.Config.RuntimeHandler,
	}
}

// namespaceOptions reports the pod's namespace modes as it asked for them.
func namespaceOptions(c *sandbox.Config) *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode(c.NetworkMode),
		Pid:     runtimeapi.NamespaceMode(c.PIDMode),
		Ipc:     runtimeapi.NamespaceMode(c.IPCMode),
		// Unset for the node's user namespace, as in the request.
		UsernsOptions: usernsOptions(c.UserNS),
	}
}

// criConfig rebuilds the request's config from what the sandbox recorded, for the verbose
// status (crictl inspectp shows it as containerd's "config").
func criConfig(sb *sandbox.Sandbox) *runtimeapi.PodSandboxConfig {
	c := &sb.Config
	out := &runtimeapi.PodSandboxConfig{
		Metadata:     podSandboxMetadata(c),
		Hostname:     c.Hostname,
		LogDirectory: c.LogDir,
		Labels:       c.Labels,
		Annotations:  c.Annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    c.CgroupParent,
			Sysctls:         c.Sysctls,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaceOptions(c)},
		},
	}
	if c.DNS != nil {
		out.DnsConfig = &runtimeapi.DNSConfig{Servers: c.DNS.Servers, Searches: c.DNS.Searches, Options: c.DNS.Options}
	}
	for _, pm := range c.PortMappings {
		out.PortMappings = append(out.PortMappings, &runtimeapi.PortMapping{
			Protocol:      runtimeapi.Protocol(runtimeapi.Protocol_value[strings.ToUpper(pm.Protocol)]),
			ContainerPort: pm.ContainerPort,
			HostPort:      pm.HostPort,
			HostIp:        pm.HostIP,
		})
	}
	if r := c.Resources; r != nil {
		out.Linux.Resources = &runtimeapi.LinuxContainerResources{
			CpuShares: int64(r.CPUShares), CpuQuota: r.CPUQuota, CpuPeriod: int64(r.CPUPeriod),
			MemoryLimitInBytes: r.MemoryLimit, CpusetCpus: r.CpusetCPUs, CpusetMems: r.CpusetMems,
		}
	}
	return out
}
