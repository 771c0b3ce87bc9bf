package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ResolveUser turns an image or request user ("", "name", "uid", "name:group", "uid:gid")
// into numeric ids using the rootfs's /etc/passwd and /etc/group. The files are opened
// inside the rootfs (a symlinked /etc/passwd cannot make the host's file be read). extraGids
// are added to the user's supplementary groups (CRI supplemental_groups).
func ResolveUser(rootfs, spec string, extraGids []uint32) (specs.User, error) {
	return resolveUser(rootfs, spec, extraGids, true)
}

// ResolveUserStrict is ResolveUser for the CRI's SupplementalGroupsPolicy Strict: the
// groups the image's /etc/group gives the user are left out, only extraGids are added.
func ResolveUserStrict(rootfs, spec string, extraGids []uint32) (specs.User, error) {
	return resolveUser(rootfs, spec, extraGids, false)
}

func resolveUser(rootfs, spec string, extraGids []uint32, imageGroups bool) (specs.User, error) {
	passwd, err := openInRootfs(rootfs, "/etc/passwd")
	if err != nil {
		return specs.User{}, err
	}
	if passwd != nil {
		defer passwd.Close()
	}
	group, err := openInRootfs(rootfs, "/etc/group")
	if err != nil {
		return specs.User{}, err
	}
	if group != nil {
		defer group.Close()
	}
	// GetExecUser wants nil interfaces, not typed nil pointers, for missing files.
	var pr, gr io.Reader
	if passwd != nil {
		pr = passwd
	}
	if group != nil {
		gr = group
	}
	eu, err := user.GetExecUser(spec, &user.ExecUser{}, pr, gr)
	if err != nil {
		return specs.User{}, fmt.Errorf("resolve user %q in the image: %w", spec, err)
	}
	u := specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	seen := map[uint32]bool{}
	for _, g := range eu.Sgids {
		if imageGroups && !seen[uint32(g)] {
			seen[uint32(g)] = true
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	for _, g := range extraGids {
		if !seen[g] {
			seen[g] = true
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	return u, nil
}

// openInRootfs opens a file for reading, resolving it inside rootfs; a missing file is
// (nil, nil).
func openInRootfs(rootfs, name string) (*os.File, error) {
	h, err := pathrs.OpenInRoot(rootfs, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s in rootfs %s: %w", name, rootfs, err)
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("reopen %s in rootfs %s: %w", name, rootfs, err)
	}
	return f, nil
}
