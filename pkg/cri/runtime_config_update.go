package cri

import (
	"context"
	"fmt"
	"net"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// UpdateRuntimeConfig records the node's pod CIDR(s) that kubelet sends once the node object
// has one. The CNI plugins take their ranges from their own config, so nothing is
// reconfigured; an empty CIDR (kubelet's "nothing to update") changes nothing.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	// kubelet joins dual-stack CIDRs with a comma.
	for _, c := range strings.Split(cidr, ",") {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return nil, invalidArg("runtime_config.network_config.pod_cidr", "%q is not a CIDR: %v", c, err)
		}
	}
	if s.opts.PodNetwork == nil {
		return nil, fmt.Errorf("record pod CIDR %s: no pod network configured", cidr)
	}
	s.opts.PodNetwork.SetPodCIDR(cidr)
	klog.FromContext(ctx).V(2).Info("Pod CIDR updated", "podCIDR", cidr)
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
