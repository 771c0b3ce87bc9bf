package cri

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/image"
)

// PullImage pulls the image and answers with its ID (the config digest), as containerd does:
// kubelet passes that ID back in CreateContainer and compares it with ListImages.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalidArg("image.image", "the image reference is empty")
	}
	imgs, err := s.images()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	img, err := imgs.Pull(ctx, ref, toImageAuth(ref, req.GetAuth()))
	if err != nil {
		return nil, err
	}
	klog.FromContext(ctx).V(2).Info("Image pulled", "image", ref, "imageRef", img.ID, "duration", time.Since(start).Round(time.Millisecond))
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}

// toImageAuth translates the request's credentials. Credentials given for another server are
// dropped rather than sent to this image's registry, as containerd does: kubelet may pass the
// pull secret of a different registry.
func toImageAuth(ref string, a *runtimeapi.AuthConfig) *image.Auth {
	if a == nil {
		return nil
	}
	if a.ServerAddress != "" && !sameRegistry(ref, a.ServerAddress) {
		return nil
	}
	out := &image.Auth{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if *out == (image.Auth{}) {
		return nil
	}
	return out
}

// sameRegistry reports whether server (a host, host:port or URL such as
// "https://index.docker.io/v1/") names the registry of image reference ref.
func sameRegistry(ref, server string) bool {
	r, err := name.ParseReference(ref)
	if err != nil {
		return false
	}
	host := server
	if !strings.Contains(host, "://") {
		host = "dummy://" + host
	}
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		return false
	}
	return canonicalRegistry(u.Host) == canonicalRegistry(r.Context().RegistryStr())
}

// canonicalRegistry folds the several names of Docker Hub into one.
func canonicalRegistry(host string) string {
	switch host {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return name.DefaultRegistry
	}
	return host
}
