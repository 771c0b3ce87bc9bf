package seccomp

import (
	"fmt"
	"io"
	"os"
	"strings"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Kind is the CRI's choice of profile.
type Kind string

// Profile kinds, as the CRI's SecurityProfile names them.
const (
	Unconfined     Kind = "Unconfined"
	RuntimeDefault Kind = "RuntimeDefault"
	Localhost      Kind = "Localhost"
)

// Profile is a container's seccomp choice: a kind, and for Localhost the profile file
// on the node.
type Profile struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path,omitempty"`
}

// maxProfileSize bounds a Localhost profile file: Docker's default profile is ~20 KiB.
const maxProfileSize = 1 << 20

// ParseProfilePath reads the deprecated CRI seccomp_profile_path: "" and "unconfined" are
// Unconfined, "runtime/default" and "docker/default" RuntimeDefault, "localhost/<path>" a
// file on the node.
func ParseProfilePath(s string) (Profile, error) {
	switch s {
	case "", "unconfined":
		return Profile{Kind: Unconfined}, nil
	case "runtime/default", "docker/default":
		return Profile{Kind: RuntimeDefault}, nil
	}
	if p, ok := strings.CutPrefix(s, "localhost/"); ok {
		return Profile{Kind: Localhost, Path: p}, nil
	}
	return Profile{}, fmt.Errorf("%w: unknown profile %q", ErrInvalidProfile, s)
}

// Resolve turns a profile choice into the OCI profile to install, nil for Unconfined.
// bounding is the container's bounding capability set: Docker's profile format allows a
// rule only for containers holding some capabilities (includes.caps) or lacking them
// (excludes.caps), and rules for a kernel or architecture. The result is checked by
// compiling it for this machine, so an unusable profile fails here, at create time.
func Resolve(p Profile, bounding []string) (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: bounding}}}
	var out *specs.LinuxSeccomp
	var err error
	switch p.Kind {
	case Unconfined, "":
		return nil, nil
	case RuntimeDefault:
		out, err = moby.GetDefaultProfile(rs)
		if err != nil {
			return nil, fmt.Errorf("runtime default seccomp profile: %w", err)
		}
	case Localhost:
		body, err := readProfile(p.Path)
		if err != nil {
			return nil, err
		}
		out, err = moby.LoadProfile(body, rs)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidProfile, p.Path, err)
		}
		if out == nil {
			// No default action and no rules: the profile allows everything.
			return nil, nil
		}
	default:
		return nil, fmt.Errorf("%w: unknown profile kind %q", ErrInvalidProfile, p.Kind)
	}
	if _, err := Compile(out, goarch()); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidProfile, p.Path, err)
	}
	return out, nil
}

func readProfile(path string) (string, error) {
	if path == "" || !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("%w: localhost profile path %q is not absolute", ErrInvalidProfile, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidProfile, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return "", fmt.Errorf("%w: read %s: %w", ErrInvalidProfile, path, err)
	}
	if len(b) > maxProfileSize {
		return "", fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidProfile, path, maxProfileSize)
	}
	return string(b), nil
}
