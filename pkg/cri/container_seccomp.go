package cri

import (
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/seccomp"
)

// seccompProfile reads the container's seccomp choice: the seccomp field, else the
// deprecated seccomp_profile_path; neither means unconfined (nil), as containerd's
// default configuration does, and so does a privileged container (as in containerd and
// CRI-O: privileged means every system call). A Localhost profile must name an absolute
// file on the node; whether it exists and parses is checked when the container is created.
func seccompProfile(sc *runtimeapi.LinuxContainerSecurityContext) (*seccomp.Profile, error) {
	const field = "config.linux.security_context.seccomp"
	if sc.GetPrivileged() {
		return nil, nil
	}
	if p := sc.GetSeccomp(); p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return &seccomp.Profile{Kind: seccomp.RuntimeDefault}, nil
		case runtimeapi.SecurityProfile_Unconfined:
			return nil, nil
		case runtimeapi.SecurityProfile_Localhost:
			ref := p.GetLocalhostRef()
			if !filepath.IsAbs(ref) {
				return nil, invalidArg(field+".localhost_ref", "%q is not an absolute path", ref)
			}
			return &seccomp.Profile{Kind: seccomp.Localhost, Path: ref}, nil
		}
		return nil, invalidArg(field+".profile_type", "unknown type %v", p.GetProfileType())
	}
	prof, err := seccomp.ParseProfilePath(sc.GetSeccompProfilePath())
	if err != nil {
		return nil, invalidArg(field+"_profile_path", "%v", err)
	}
	switch prof.Kind {
	case seccomp.Unconfined:
		return nil, nil
	case seccomp.Localhost:
		if !filepath.IsAbs(prof.Path) {
			return nil, invalidArg(field+"_profile_path", "%q: the localhost path is not absolute", sc.GetSeccompProfilePath())
		}
	}
	return &prof, nil
}
