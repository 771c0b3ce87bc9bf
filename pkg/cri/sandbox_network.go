package cri

import (
	"context"
	"errors"
)

// CNIReadiness is what *cni.Network offers: readiness with the reason when not ready.
type CNIReadiness interface {
	Status(ctx context.Context) (ready bool, reason string)
}

// networkStatus adapts a CNIReadiness to NetworkStatus.
type networkStatus struct{ n CNIReadiness }

// NewNetworkStatus returns the NetworkStatus of a CNI network, for Options.Network: ready
// once a usable network config is loaded (and its plugins' STATUS agrees).
func NewNetworkStatus(n CNIReadiness) NetworkStatus { return networkStatus{n: n} }

func (s networkStatus) Status(ctx context.Context) error {
	if ready, reason := s.n.Status(ctx); !ready {
		return errors.New(reason)
	}
	return nil
}
