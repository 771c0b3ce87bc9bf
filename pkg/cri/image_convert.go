package cri

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/image"
)

// toCRIImage translates a stored image. The result depends only on the image, never on the
// reference it was found by: critest compares ImageStatus answers by ID, tag and digest.
// The store never changes a published image (a change publishes a new copy), and the answer is
// only read while gRPC encodes it, so its lists and annotations are shared, not copied.
func toCRIImage(img *image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Pinned:      img.Pinned,
	}
	out.Uid, out.Username = imageUser(img.User)
	if len(img.Annotations) > 0 {
		out.Spec = &runtimeapi.ImageSpec{Image: img.ID, Annotations: img.Annotations}
	}
	return out
}

// imageUser splits the config's User the way kubelet reads it: a numeric user (alone or as
// "uid:gid") is reported as Uid, a name (alone or as "name:group") as Username, never both.
// kubelet uses them to enforce runAsNonRoot, so a name must not be guessed into a uid here.
func imageUser(user string) (*runtimeapi.Int64Value, string) {
	if user == "" {
		return nil, ""
	}
	u, _, _ := strings.Cut(user, ":")
	if uid, err := strconv.ParseInt(u, 10, 64); err == nil {
		return &runtimeapi.Int64Value{Value: uid}, ""
	}
	return nil, u
}

// verboseImageInfo is the JSON of ImageStatus(verbose)'s "info" key, shaped as containerd's
// so that tools reading it (crictl inspecti) find the same fields.
type verboseImageInfo struct {
	ChainID   string        `json:"chainID"`
	ImageSpec ocispec.Image `json:"imageSpec"`
}

// imageInfo builds the verbose info map: the image's top chain ID and its OCI image config.
func imageInfo(img *image.Image) (map[string]string, error) {
	info := verboseImageInfo{ImageSpec: ocispec.Image{
		Platform: ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant},
		Config: ocispec.ImageConfig{
			User:       img.Config.User,
			Env:        img.Config.Env,
			Entrypoint: img.Config.Entrypoint,
			Cmd:        img.Config.Cmd,
			WorkingDir: img.Config.WorkingDir,
			Labels:     img.Config.Labels,
			StopSignal: img.Config.StopSignal,
		},
		RootFS: ocispec.RootFS{Type: "layers"},
	}}
	if len(img.Layers) > 0 {
		info.ChainID = img.Layers[len(img.Layers)-1]
	}
	if !img.Created.IsZero() {
		created := img.Created
		info.ImageSpec.Created = &created
	}
	if len(img.Config.ExposedPorts) > 0 {
		info.ImageSpec.Config.ExposedPorts = map[string]struct{}{}
		for p := range img.Config.ExposedPorts {
			info.ImageSpec.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if len(img.Config.Volumes) > 0 {
		info.ImageSpec.Config.Volumes = map[string]struct{}{}
		for v := range img.Config.Volumes {
			info.ImageSpec.Config.Volumes[v] = struct{}{}
		}
	}
	for _, d := range img.DiffIDs {
		info.ImageSpec.RootFS.DiffIDs = append(info.ImageSpec.RootFS.DiffIDs, digest.Digest(d))
	}
	raw, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode verbose info of image %s: %w", img.ID, err)
	}
	return map[string]string{"info": string(raw)}, nil
}
