package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxUserFile bounds how much of an image's /etc/passwd or /etc/group is read.
const maxUserFile = 16 << 20

// ResolveUser turns an image or request user ("", "name", "uid", "name:group", "uid:gid")
// into numeric ids using the rootfs's /etc/passwd and /etc/group. The files are opened
// inside the rootfs (a symlinked /etc/passwd cannot make the host's file be read). The
// groups /etc/group lists the user in are added to its supplementary groups, even when
// the spec names the primary group (the CRI's SupplementalGroupsPolicy Merge, as
// containerd does), then extraGids (CRI supplemental_groups).
func ResolveUser(rootfs, spec string, extraGids []uint32) (specs.User, error) {
	return resolveUser(rootfs, spec, extraGids, true)
}

// ResolveUserStrict is ResolveUser for the CRI's SupplementalGroupsPolicy Strict: the
// groups the image's /etc/group gives the user are left out, only extraGids are added.
func ResolveUserStrict(rootfs, spec string, extraGids []uint32) (specs.User, error) {
	return resolveUser(rootfs, spec, extraGids, false)
}

func resolveUser(rootfs, spec string, extraGids []uint32, imageGroups bool) (specs.User, error) {
	passwd, err := readInRootfs(rootfs, "/etc/passwd")
	if err != nil {
		return specs.User{}, err
	}
	group, err := readInRootfs(rootfs, "/etc/group")
	if err != nil {
		return specs.User{}, err
	}
	// GetExecUser wants nil interfaces, not typed nil pointers, for missing files.
	var pr, gr io.Reader
	if passwd != nil {
		pr = bytes.NewReader(passwd)
	}
	if group != nil {
		gr = bytes.NewReader(group)
	}
	eu, err := user.GetExecUser(spec, &user.ExecUser{}, pr, gr)
	if err != nil {
		return specs.User{}, fmt.Errorf("resolve user %q in the image: %w", spec, err)
	}
	u := specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	var gids []uint32
	if imageGroups {
		if gids, err = memberships(passwd, group, spec, eu.Uid); err != nil {
			return specs.User{}, err
		}
	}
	gids = append(gids, extraGids...)
	seen := map[uint32]bool{}
	for _, g := range gids {
		if !seen[g] {
			seen[g] = true
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	return u, nil
}

// memberships lists the groups /etc/group names the user in, by the name spec gives or,
// for a numeric user, the name /etc/passwd has for uid.
func memberships(passwd, group []byte, spec string, uid int) ([]uint32, error) {
	if group == nil {
		return nil, nil
	}
	name, _, _ := strings.Cut(spec, ":")
	if _, err := strconv.Atoi(name); err == nil || name == "" {
		name = ""
		if passwd != nil {
			users, err := user.ParsePasswdFilter(bytes.NewReader(passwd), func(p user.User) bool { return p.Uid == uid })
			if err != nil {
				return nil, fmt.Errorf("read /etc/passwd of the image: %w", err)
			}
			if len(users) > 0 {
				name = users[0].Name
			}
		}
	}
	if name == "" {
		return nil, nil
	}
	groups, err := user.ParseGroupFilter(bytes.NewReader(group), func(g user.Group) bool { return slices.Contains(g.List, name) })
	if err != nil {
		return nil, fmt.Errorf("read /etc/group of the image: %w", err)
	}
	var out []uint32
	for _, g := range groups {
		out = append(out, uint32(g.Gid))
	}
	return out, nil
}

// readInRootfs reads a file resolved inside rootfs (at most maxUserFile bytes); a missing
// file is (nil, nil).
func readInRootfs(rootfs, name string) ([]byte, error) {
	f, err := openInRootfs(rootfs, name)
	if err != nil || f == nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxUserFile))
	if err != nil {
		return nil, fmt.Errorf("read %s in rootfs %s: %w", name, rootfs, err)
	}
	return b, nil
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
