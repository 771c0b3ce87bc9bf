package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// writePodFile writes one of the pod's files (hosts, resolv.conf, hostname). In a pod with
// a user namespace it belongs to the pod's root, which may rewrite it as root may in any
// other pod (its mount is not idmapped: kubelet gives mappings only to its own mounts).
func writePodFile(r *record, path string, data []byte) error {
	uid, gid, ok := r.RootHostIDs()
	if !ok {
		return writeFileAtomic(path, data, 0o644)
	}
	return writeFileAtomicOwned(path, data, 0o644, int(uid), int(gid))
}

// writeFileAtomic writes via a temporary file and rename, so a container mounting the file
// never sees it half-written.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomicOwned(path, data, perm, -1, -1)
}

// writeFileAtomicOwned is writeFileAtomic giving the file to uid:gid (-1 keeps ours).
func writeFileAtomicOwned(path string, data []byte, perm os.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	name := tmp.Name()
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(name, perm); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(name, uid, gid); err != nil {
			_ = os.Remove(name)
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	if err := os.Rename(name, path); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

// resolvConf renders the pod's resolv.conf; without a DNS config the host's file is copied
// (kubelet's "Default" DNS policy arrives as exactly that).
func resolvConf(dns *DNSConfig, hostResolvConf string) ([]byte, error) {
	if dns == nil {
		b, err := os.ReadFile(hostResolvConf)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read host resolv.conf %s: %w", hostResolvConf, err)
		}
		return b, nil
	}
	var b bytes.Buffer
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return b.Bytes(), nil
}

// hostsFile renders /etc/hosts: the host's file for a host-network pod (it shares the
// node's names), otherwise localhost entries plus the pod's hostname on each of its IPs.
func hostsFile(hostNetwork bool, hostname string, ips []string, hostHosts string) ([]byte, error) {
	if hostNetwork {
		b, err := os.ReadFile(hostHosts)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read host hosts file %s: %w", hostHosts, err)
		}
		return b, nil
	}
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if hostname != "" {
		for _, ip := range ips {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	return b.Bytes(), nil
}

// mountShm mounts the pod's /dev/shm. nosuid/nodev/noexec as Docker, containerd and CRI-O
// do: shared memory never needs to hold executables or device nodes.
func mountShm(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create shm dir %s: %w", dir, err)
	}
	data := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("mount shm tmpfs on %s: %w", dir, err)
	}
	return nil
}

// unmountShm lazily unmounts the pod's /dev/shm (a container may still hold it: the kernel
// frees the tmpfs with its last user). Not mounted is not an error.
func unmountShm(dir string) error {
	if dir == "" {
		return nil
	}
	for range 4 { // stacked mounts from an interrupted earlier attempt; bounded
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount shm %s: %w", dir, err)
		}
	}
	return nil
}

// isMountPoint reports whether dir is a mount point (its device differs from its parent's
// or it is a tmpfs); used by tests and recovery checks.
func isMountPoint(dir string) bool {
	var st, pst unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev
}
