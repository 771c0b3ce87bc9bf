//go:build heavy

package main

// The daemon's dependencies: their package initialisers run in every process of the
// binary, the monitor included.
import (
	_ "github.com/containernetworking/cni/libcni"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/opencontainers/cgroups/manager"
	_ "go.etcd.io/bbolt"
	_ "google.golang.org/grpc"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
)
