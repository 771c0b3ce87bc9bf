package cni

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"k8s.io/klog/v2"
)

// PortMapping is one hostPort of a pod, passed to plugins with the portMappings capability.
type PortMapping struct {
	Protocol      string // TCP, UDP or SCTP (any case)
	ContainerPort int32
	HostPort      int32
	HostIP        string
}

// DNS is passed to plugins with the dns capability.
type DNS struct {
	Servers, Searches, Options []string
}

// Pod identifies one pod sandbox to the plugins.
type Pod struct {
	ID        string // sandbox ID: the CNI container ID
	NetNS     string // path of the pinned network namespace ("" when it is gone)
	Name      string
	Namespace string
	UID       string

	PortMappings []PortMapping
	DNS          *DNS
	CgroupPath   string
	Annotations  map[string]string
}

// Result is what a successful ADD produced.
type Result struct {
	Network string   // name of the network config used
	IPs     []string // every pod address, IPv4 first
	Raw     types.Result
}

func (n *Network) runtimeConf(p Pod) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ID,
		NetNS:       p.NetNS,
		IfName:      n.opts.IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
			{"K8S_POD_UID", p.UID},
		},
		CapabilityArgs: map[string]any{},
	}
	// libcni hands a capability only to plugins that declare it, so offering them all is safe.
	var pms []map[string]any
	for _, pm := range p.PortMappings {
		if pm.HostPort <= 0 {
			continue // no hostPort: nothing for portmap to do (as containerd and CRI-O)
		}
		m := map[string]any{
			"hostPort":      pm.HostPort,
			"containerPort": pm.ContainerPort,
			"protocol":      strings.ToLower(pm.Protocol),
		}
		if pm.HostIP != "" {
			m["hostIP"] = pm.HostIP
		}
		pms = append(pms, m)
	}
	if len(pms) > 0 {
		rt.CapabilityArgs["portMappings"] = pms
	}
	if p.DNS != nil {
		rt.CapabilityArgs["dns"] = map[string]any{
			"servers": p.DNS.Servers, "searches": p.DNS.Searches, "options": p.DNS.Options,
		}
	}
	if p.CgroupPath != "" {
		rt.CapabilityArgs["cgroupPath"] = p.CgroupPath
	}
	if len(p.Annotations) > 0 {
		rt.CapabilityArgs["io.kubernetes.cri.pod-annotations"] = p.Annotations
	}
	if cidr := n.PodCIDR(); cidr != "" {
		rt.CapabilityArgs["ipRanges"] = [][]map[string]string{{{"subnet": cidr}}}
	}
	return rt
}

// Setup runs ADD for the pod with the loaded config. When a plugin fails, the plugins that
// already ran are undone with DEL so no address or rule leaks; the returned error is ADD's.
func (n *Network) Setup(ctx context.Context, p Pod) (_ *Result, retErr error) {
	logger := klog.FromContext(ctx)
	conf, err := n.current()
	if err != nil {
		return nil, err
	}
	if p.ID == "" || p.NetNS == "" {
		return nil, fmt.Errorf("cni setup: pod ID and network namespace are required")
	}
	rt := n.runtimeConf(p)
	res, err := n.cni.AddNetworkList(ctx, conf, rt)
	if err != nil {
		// libcni caches nothing on a failed ADD, so DEL with the same config and args now.
		if derr := n.del(ctx, conf, rt); derr != nil {
			logger.Error(derr, "Undoing failed CNI ADD", "podSandboxID", p.ID, "network", conf.Name)
			return nil, fmt.Errorf("cni add to network %s: %w (undo also failed: %v)", conf.Name, err, derr)
		}
		return nil, fmt.Errorf("cni add to network %s: %w", conf.Name, err)
	}
	defer func() {
		if retErr != nil {
			if derr := n.del(ctx, conf, rt); derr != nil {
				logger.Error(derr, "Undoing CNI ADD", "podSandboxID", p.ID)
			}
		}
	}()
	ips, err := resultIPs(res)
	if err != nil {
		return nil, fmt.Errorf("cni add to network %s: %w", conf.Name, err)
	}
	logger.V(4).Info("CNI ADD done", "podSandboxID", p.ID, "network", conf.Name, "ips", ips)
	return &Result{Network: conf.Name, IPs: ips, Raw: res}, nil
}

func resultIPs(res types.Result) ([]string, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert CNI result: %w", err)
	}
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Address.IP == nil {
			continue
		}
		// Only addresses on the pod's side (or of unknown interface) are pod IPs; the
		// bridge plugin also reports the host-side interfaces.
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(r.Interfaces) &&
			r.Interfaces[*ip.Interface].Sandbox == "" {
			continue
		}
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	return append(v4, v6...), nil
}

// Teardown runs DEL for every cached attachment of the pod, each with the exact config and
// arguments of its ADD (libcni's cache), so it works after a restart or a config change.
// Without a cache entry (ADD never completed or DEL already succeeded), DEL runs with the
// current config, if any: DEL must be idempotent by the CNI spec. Each DEL runs to its end
// even when ctx is cancelled (see del).
func (n *Network) Teardown(ctx context.Context, p Pod) error {
	atts, err := n.cni.GetCachedAttachments(p.ID)
	if err != nil {
		return fmt.Errorf("read CNI cache for %s: %w", p.ID, err)
	}
	if len(atts) == 0 {
		conf, err := n.current()
		if err != nil {
			return nil // nothing cached and no config: nothing was added
		}
		rt := n.runtimeConf(p)
		if err := n.del(ctx, conf, rt); err != nil {
			return fmt.Errorf("cni del from network %s: %w", conf.Name, err)
		}
		return nil
	}
	var errs []error
	for _, a := range atts {
		if err := n.delAttachment(ctx, a, p.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Network) delAttachment(ctx context.Context, a *libcni.NetworkAttachment, netns string) error {
	conf, err := libcni.NetworkConfFromBytes(a.Config)
	if err != nil {
		return fmt.Errorf("cached CNI config of %s: %w", a.ContainerID, err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    a.ContainerID,
		NetNS:          netns,
		IfName:         a.IfName,
		Args:           a.CniArgs,
		CapabilityArgs: a.CapabilityArgs,
	}
	if err := n.del(ctx, conf, rt); err != nil {
		return fmt.Errorf("cni del from network %s: %w", conf.Name, err)
	}
	return nil
}

// Check runs CHECK for the pod (when the config allows it).
func (n *Network) Check(ctx context.Context, p Pod) error {
	conf, err := n.current()
	if err != nil {
		return err
	}
	if err := n.cni.CheckNetworkList(ctx, conf, n.runtimeConf(p)); err != nil {
		return fmt.Errorf("cni check on network %s: %w", conf.Name, err)
	}
	return nil
}

// GC deletes every cached attachment whose sandbox is not in valid (a sandbox removed while
// the daemon was down, a crash mid-Run), then, with a config of version 1.1.0 or later, asks
// the plugins to GC everything not in valid (CNI spec 1.1 GC). Attachments of networks other
// than the loaded one are deleted with their cached config.
func (n *Network) GC(ctx context.Context, valid []string) error {
	logger := klog.FromContext(ctx)
	keep := make(map[string]bool, len(valid))
	for _, id := range valid {
		keep[id] = true
	}
	atts, err := n.cni.GetCachedAttachments("")
	if err != nil {
		return fmt.Errorf("read CNI cache: %w", err)
	}
	loaded := n.Name()
	var errs []error
	for _, a := range atts {
		if keep[a.ContainerID] || a.Network == loaded {
			continue // the loaded network's stale attachments are handled by GCNetworkList
		}
		logger.Info("Deleting stale CNI attachment", "podSandboxID", a.ContainerID, "network", a.Network)
		if err := n.delAttachment(ctx, a, ""); err != nil {
			errs = append(errs, err)
		}
	}
	conf, err := n.current()
	if err != nil {
		return errors.Join(errs...)
	}
	// A non-nil list even when empty: libcni refuses to inject a nil value into the GC
	// config (and an empty list correctly means "nothing is valid").
	args := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}
	for _, id := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: id, IfName: n.opts.IfName})
	}
	if err := n.cni.GCNetworkList(ctx, conf, args); err != nil {
		errs = append(errs, fmt.Errorf("cni gc of network %s: %w", conf.Name, err))
	}
	return errors.Join(errs...)
}

// del runs DEL to its end even when ctx is cancelled (kubelet gave up on the RPC): a plugin
// killed half way can leak for good. The bridge plugin, for one, deletes the veth before its
// masquerade rules, and a retried DEL finds no veth and skips the rules.
func (n *Network) del(ctx context.Context, conf *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return n.cni.DelNetworkList(ctx, conf, rt)
}
