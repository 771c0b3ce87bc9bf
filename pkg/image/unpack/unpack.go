// Package unpack writes one image layer (a tar stream) into its own directory, in the form
// overlayfs expects of a lower dir: OCI whiteouts become 0/0 character devices and opaque
// directories carry trusted.overlay.opaque=y.
//
// A layer is hostile input. Every entry is created through directory file descriptors that were
// opened component by component with O_NOFOLLOW, so no entry can create, change or point a write
// outside the layer directory: names with "..", absolute names, entries below a symlink, hard links
// to names outside the layer and whiteouts naming outside are refused with an error naming the
// entry. Symlink targets are stored verbatim: they are never followed here, and overlayfs resolves
// them inside the container's root.
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// ErrUnsafeEntry marks a layer entry that would escape or corrupt the layer directory.
var ErrUnsafeEntry = errors.New("unsafe layer entry")

// EntryError names the tar entry that made an unpack fail.
type EntryError struct {
	Name string
	Err  error
}

func (e *EntryError) Error() string { return fmt.Sprintf("layer entry %q: %v", e.Name, e.Err) }
func (e *EntryError) Unwrap() error { return e.Err }

func unsafeEntry(reason string) error { return fmt.Errorf("%w: %s", ErrUnsafeEntry, reason) }

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueWhiteout = ".wh..wh..opq"
	// maxCachedDirs bounds the parent dir fd cache: layers are grouped by directory, so a small
	// cache avoids re-walking the path for almost every entry without holding many fds.
	maxCachedDirs = 64
)

// Stats describes what an unpack wrote, so that image filesystem usage can be reported from
// memory instead of walking the layer store on every ImageFsInfo call.
type Stats struct {
	Bytes  int64 // regular file content plus one block per other inode
	Inodes int64
}

// Options tunes an unpack.
type Options struct {
	// Chown applies the owners recorded in the tar; it needs CAP_CHOWN, so callers that are not
	// root turn it off (files then belong to the caller).
	Chown bool
}

type dirTimes struct {
	name         string
	atime, mtime time.Time
}

type unpacker struct {
	root int // fd of the layer directory, O_RDONLY|O_DIRECTORY
	opts Options
	dirs map[string]int // cleaned relative dir path -> open fd (never "." : that is root)
	// stale holds fds dropped from the cache while an entry is being processed: the entry may
	// still use them, so they are closed only once it is done.
	stale []int
	times []dirTimes
	stats Stats
	buf   []byte
}

// Apply reads the uncompressed tar stream r into dir, which must be an existing directory
// owned by the caller (normally an empty temporary directory renamed into place afterwards).
func Apply(ctx context.Context, r io.Reader, dir string, opts Options) (Stats, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("open layer dir %s: %w", dir, err)
	}
	u := &unpacker{root: fd, opts: opts, dirs: map[string]int{}, buf: make([]byte, 128<<10)}
	defer u.close()
	// The root of a lower dir becomes "/" in the container unless a layer above says otherwise;
	// a temporary dir is 0700, which would make "/" unreadable for non-root users.
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return Stats{}, fmt.Errorf("chmod layer dir %s: %w", dir, err)
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return u.stats, fmt.Errorf("unpack into %s: %w", dir, err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return u.stats, fmt.Errorf("read tar header: %w", err)
		}
		err = u.entry(ctx, hdr, tr)
		u.closeStale()
		if err != nil {
			return u.stats, &EntryError{Name: hdr.Name, Err: err}
		}
	}
	// Directory times last: creating children changes a directory's mtime. Deepest first, so that
	// setting a child's times does not disturb its parent afterwards (it does not, but the order
	// documents that parents are finished last).
	for i := len(u.times) - 1; i >= 0; i-- {
		t := u.times[i]
		// A later entry may have replaced the directory; its times are then moot.
		if err := u.setTimes(t.name, t.atime, t.mtime); err != nil && !errors.Is(err, unix.ENOENT) {
			return u.stats, &EntryError{Name: t.name, Err: err}
		}
	}
	return u.stats, nil
}

func (u *unpacker) close() {
	u.dropCache("")
	u.closeStale()
	unix.Close(u.root)
}

// dropCache forgets cached dir fds at or below prefix ("" = all).
func (u *unpacker) dropCache(prefix string) {
	for k, fd := range u.dirs {
		if prefix == "" || k == prefix || strings.HasPrefix(k, prefix+"/") {
			u.stale = append(u.stale, fd)
			delete(u.dirs, k)
		}
	}
}

func (u *unpacker) closeStale() {
	for _, fd := range u.stale {
		unix.Close(fd)
	}
	u.stale = u.stale[:0]
}

// cleanName validates a tar name. It refuses rather than sanitises: a layer that names ".." or an
// absolute path was built to escape, and the pull must fail naming it.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", unsafeEntry("empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", unsafeEntry("absolute name")
	}
	for _, p := range strings.Split(name, "/") {
		if p == ".." {
			return "", unsafeEntry("name contains \"..\"")
		}
	}
	if strings.ContainsRune(name, 0) {
		return "", unsafeEntry("name contains NUL")
	}
	return path.Clean(name), nil
}

// openDir returns an fd of the directory rel (cleaned, relative) beneath the layer root, walking
// one component at a time with O_NOFOLLOW so that a symlink anywhere in the path is an error
// instead of a way out. Missing directories are created (tar streams may omit parent entries).
// The returned fd belongs to the cache; callers must not close it.
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	if rel == "." || rel == "" {
		return u.root, nil
	}
	if fd, ok := u.dirs[rel]; ok {
		return fd, nil
	}
	parentRel, base := path.Split(rel)
	parent, err := u.openDir(path.Clean(parentRel), create)
	if err != nil {
		return -1, err
	}
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, base, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create parent dir %s: %w", rel, err)
		}
		u.stats.Inodes++
		u.stats.Bytes += 4096
		fd, err = unix.Openat(parent, base, flags, 0)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, unsafeEntry(fmt.Sprintf("parent %q is not a directory (symlink or file)", rel))
	}
	if err != nil {
		return -1, fmt.Errorf("open parent dir %s: %w", rel, err)
	}
	if len(u.dirs) >= maxCachedDirs {
		u.dropCache("")
	}
	u.dirs[rel] = fd
	return fd, nil
}

// splitParent opens the parent of a cleaned name and returns it with the last component.
func (u *unpacker) splitParent(name string, create bool) (int, string, error) {
	dir, base := path.Split(name)
	fd, err := u.openDir(path.Clean(dir), create)
	return fd, base, err
}

func (u *unpacker) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return unsafeEntry("layer root is not a directory")
		}
		u.times = append(u.times, dirTimes{name: ".", atime: hdr.AccessTime, mtime: hdr.ModTime})
		return u.applyMeta(u.root, ".", hdr, true)
	}
	parent, base, err := u.splitParent(name, true)
	if err != nil {
		return err
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(parent, base)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(parent, name, base, hdr)
	case tar.TypeReg, tar.TypeRegA:
		return u.regular(parent, name, base, hdr, r)
	case tar.TypeSymlink:
		if err := u.replace(parent, name, base, false); err != nil {
			return err
		}
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("create symlink: %w", err)
		}
		u.count(0)
		return u.applyMeta(parent, base, hdr, false)
	case tar.TypeLink:
		return u.hardlink(parent, name, base, hdr)
	case tar.TypeFifo:
		if err := u.replace(parent, name, base, false); err != nil {
			return err
		}
		if err := unix.Mknodat(parent, base, unix.S_IFIFO|0o600, 0); err != nil {
			return fmt.Errorf("create fifo: %w", err)
		}
		u.count(0)
		return u.applyMeta(parent, base, hdr, false)
	case tar.TypeChar, tar.TypeBlock:
		return u.device(ctx, parent, name, base, hdr)
	case tar.TypeXGlobalHeader:
		return nil
	default:
		klog.FromContext(ctx).V(4).Info("Skipping layer entry of unsupported type", "entry", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}
}

// device handles character and block device entries. Policy: a 0/0 character device is an
// overlay whiteout already (images exported from an overlay upper dir contain them) and is kept;
// every other device node is skipped. Containers get their /dev from a tmpfs the runtime fills,
// and a device node shipped in an image would be a way to reach a host device whenever the device
// cgroup does not forbid it (cgroup v1 without a devices policy), so images never get to create
// one.
func (u *unpacker) device(ctx context.Context, parent int, name, base string, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeChar && hdr.Devmajor == 0 && hdr.Devminor == 0 {
		if err := u.replace(parent, name, base, false); err != nil {
			return err
		}
		if err := unix.Mknodat(parent, base, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("create whiteout device: %w", err)
		}
		u.count(0)
		return nil
	}
	klog.FromContext(ctx).V(2).Info("Skipping device node in layer", "entry", name, "major", hdr.Devmajor, "minor", hdr.Devminor)
	return nil
}

func (u *unpacker) count(size int64) {
	u.stats.Inodes++
	if size > 0 {
		u.stats.Bytes += (size + 4095) &^ 4095
	} else {
		u.stats.Bytes += 4096
	}
}

// whiteout turns an OCI whiteout entry into its overlay form. Per the image spec a whiteout only
// hides lower layers: a same-layer file of that name wins, so an existing entry is left alone.
func (u *unpacker) whiteout(parent int, base string) error {
	if base == opaqueWhiteout {
		// The marker's parent is the directory to make opaque.
		if err := unix.Fsetxattr(parent, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("mark directory opaque: %w", err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		// Other .wh..wh. names are aufs bookkeeping (hard link dirs): meaningless here.
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." || strings.ContainsRune(target, '/') {
		return unsafeEntry(fmt.Sprintf("whiteout names %q", target))
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parent, target, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	}
	if err := unix.Mknodat(parent, target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create whiteout %s: %w", target, err)
	}
	u.count(0)
	return nil
}

// replace removes whatever a previous entry put at base, as tar extraction semantics require.
// An existing directory is kept when a directory is being created (its content stays).
func (u *unpacker) replace(parent int, name, base string, keepDir bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat existing entry: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return nil
		}
		// Cached fds may point into the tree being removed, and the recorded times of the
		// directory and everything below it no longer apply: whatever comes next at that name
		// records its own. Setting them later would walk through the replacement (a symlink or
		// file) and be refused as unsafe.
		u.dropCache(name)
		u.dropTimes(name)
		return removeAllAt(parent, base)
	}
	if err := unix.Unlinkat(parent, base, 0); err != nil {
		return fmt.Errorf("remove existing entry: %w", err)
	}
	return nil
}

// dropTimes forgets the recorded times of the directory name and of every directory below it.
func (u *unpacker) dropTimes(name string) {
	u.times = slices.DeleteFunc(u.times, func(t dirTimes) bool {
		return t.name == name || strings.HasPrefix(t.name, name+"/")
	})
}

// removeAllAt removes name below dirfd recursively without following symlinks.
func removeAllAt(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s for removal: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	entries, err := f.ReadDir(-1)
	if err != nil {
		f.Close()
		return fmt.Errorf("read dir %s: %w", name, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			err = removeAllAt(fd, e.Name())
		} else {
			err = unix.Unlinkat(fd, e.Name(), 0)
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("remove %s/%s: %w", name, e.Name(), err)
		}
	}
	f.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("remove dir %s: %w", name, err)
	}
	return nil
}

func (u *unpacker) mkdir(parent int, name, base string, hdr *tar.Header) error {
	if err := u.replace(parent, name, base, true); err != nil {
		return err
	}
	if err := unix.Mkdirat(parent, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create dir: %w", err)
	}
	fd, err := u.openDir(name, false)
	if err != nil {
		return err
	}
	u.count(0)
	if err := u.applyMeta(fd, ".", hdr, true); err != nil {
		return err
	}
	u.times = append(u.times, dirTimes{name: name, atime: hdr.AccessTime, mtime: hdr.ModTime})
	return nil
}

func (u *unpacker) regular(parent int, name, base string, hdr *tar.Header, r io.Reader) error {
	if err := u.replace(parent, name, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	n, err := io.CopyBuffer(f, r, u.buf)
	if err != nil {
		return fmt.Errorf("write file content: %w", err)
	}
	if n != hdr.Size {
		return fmt.Errorf("short file content: %d of %d bytes", n, hdr.Size)
	}
	u.count(n)
	if err := u.applyFdMeta(fd, hdr); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close file: %w", err)
	}
	return u.setTimesAt(parent, base, hdr.AccessTime, hdr.ModTime)
}

// hardlink links base to another entry of this layer. The target name goes through the same
// validation and O_NOFOLLOW walk as an entry name, so it can only name something in the layer;
// linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what it points to.
func (u *unpacker) hardlink(parent int, name, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	if target == "." {
		return unsafeEntry("hard link to the layer root")
	}
	if err := u.replace(parent, name, base, false); err != nil {
		return err
	}
	srcParent, srcBase, err := u.splitParent(target, false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	if err := unix.Linkat(srcParent, srcBase, parent, base, 0); err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// applyMeta sets owner, mode and xattrs of an entry given as (dirfd, name); for directories name
// is "." and dirfd the directory itself.
func (u *unpacker) applyMeta(dirfd int, name string, hdr *tar.Header, isDir bool) error {
	if isDir {
		return u.applyFdMeta(dirfd, hdr)
	}
	if u.opts.Chown {
		if err := unix.Fchownat(dirfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// Only fifos get here; fchmodat cannot be told not to follow, but the entry was just
		// created by us as a fifo in a directory nobody else writes to.
		if err := unix.Fchmodat(dirfd, name, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	for k, v := range xattrs(hdr) {
		if strings.HasPrefix(k, "user.") {
			// The kernel allows user.* attributes only on regular files and directories and
			// refuses them (EPERM) on symlinks and fifos, the only entries that get here. Docker
			// and containerd drop them too rather than fail the layer.
			continue
		}
		if err := unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name), k, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return u.setTimesAt(dirfd, name, hdr.AccessTime, hdr.ModTime)
}

// applyFdMeta sets owner, then mode (chown clears setuid/setgid, so the order matters), then
// xattrs on an open file or directory.
func (u *unpacker) applyFdMeta(fd int, hdr *tar.Header) error {
	if u.opts.Chown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod %o: %w", hdr.Mode, err)
	}
	for k, v := range xattrs(hdr) {
		if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return nil
}

// xattrs returns the entry's extended attributes minus the trusted.* namespace: overlayfs keeps
// its own metadata there (opaque, redirect, metacopy), and a layer that forged those could make
// overlay look up paths the layer does not contain.
func xattrs(hdr *tar.Header) map[string]string {
	out := map[string]string{}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || strings.HasPrefix(name, "trusted.") {
			continue
		}
		out[name] = v
	}
	return out
}

func (u *unpacker) setTimes(name string, atime, mtime time.Time) error {
	if name == "." {
		return u.setTimesAt(u.root, ".", atime, mtime)
	}
	parent, base, err := u.splitParent(name, false)
	if err != nil {
		return err
	}
	return u.setTimesAt(parent, base, atime, mtime)
}

func (u *unpacker) setTimesAt(dirfd int, name string, atime, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
