package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

// The users and groups of the upstream busybox image, which specs name by
// number and by name (www-data is 33, nobody 65534).
const (
	passwdFile = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	groupFile = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`
	// Without this file glibc also defaults to "files", but saying it keeps
	// lookups from trying modules the image does not have.
	nsswitchFile = `passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
`
)

// tool is a program copied from a Debian package into an image.
type tool struct{ from, to string }

// baseTools are the programs of the busybox base besides busybox itself:
// the procps pgrep and the util-linux ipcs (`ipcs -m` output is what the IPC
// namespace spec greps).
var baseTools = []tool{
	{"/usr/bin/pgrep", "/usr/bin/pgrep"},
	{"/usr/bin/ipcs", "/usr/bin/ipcs"},
}

// busyboxApplets asks the package's busybox for its applet list. It runs the
// extracted binary on the build machine, which has the same libc ABI.
func busyboxApplets(ctx context.Context, binary []byte) ([]string, error) {
	dir, err := os.MkdirTemp("", "testimages-busybox-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "busybox")
	if err := os.WriteFile(bin, binary, 0o755); err != nil {
		return nil, fmt.Errorf("write busybox: %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	sort.Strings(applets)
	if len(applets) < 100 {
		return nil, fmt.Errorf("busybox lists only %d applets", len(applets))
	}
	return applets, nil
}

// baseTree is the busybox image's filesystem: Debian's dynamically linked
// busybox (a static one runs applets in-process, so `sh -c ls` would never
// exec /bin/ls and masking /bin/ls would have no effect) with every applet
// as a hard link in /bin (hard, not symbolic: masking /bin/ls through a
// symlink would mask /bin/busybox and with it /bin/sh), its libc, procps'
// pgrep, util-linux's ipcs, and the upstream image's users.
func baseTree(ctx context.Context, pool *imagebuild.Tree) (*imagebuild.Tree, error) {
	t := imagebuild.NewTree()
	bb := pool.Get("/bin/busybox")
	if bb == nil || bb.Kind != imagebuild.KindFile {
		return nil, fmt.Errorf("package busybox has no /bin/busybox")
	}
	steps := []error{
		t.AddDir("/bin", 0o755, 0, 0),
		t.AddDir("/dev", 0o755, 0, 0),
		t.AddDir("/etc", 0o755, 0, 0),
		t.AddDir("/home", 0o755, 0, 0),
		t.AddDir("/proc", 0o555, 0, 0),
		t.AddDir("/root", 0o700, 0, 0),
		t.AddDir("/run", 0o755, 0, 0),
		t.AddDir("/sys", 0o555, 0, 0),
		t.AddDir("/tmp", 0o1777, 0, 0),
		t.AddDir("/usr/local/bin", 0o755, 0, 0),
		t.AddDir("/usr/sbin", 0o755, 0, 0),
		t.AddDir("/var/spool/mail", 0o755, 8, 8),
		t.AddDir("/var/www", 0o755, 33, 33),
		t.AddSymlink("/var/run", "../run"),
		t.AddFile("/etc/passwd", []byte(passwdFile), 0o644, 0, 0),
		t.AddFile("/etc/group", []byte(groupFile), 0o644, 0, 0),
		t.AddFile("/etc/nsswitch.conf", []byte(nsswitchFile), 0o644, 0, 0),
		t.CopyFrom(pool, "/bin/busybox"),
	}
	for _, err := range steps {
		if err != nil {
			return nil, fmt.Errorf("base tree: %w", err)
		}
	}
	applets, err := busyboxApplets(ctx, bb.Inode.Data)
	if err != nil {
		return nil, err
	}
	for _, a := range applets {
		if err := t.AddHardlink("/bin/"+a, "/bin/busybox"); err != nil {
			return nil, fmt.Errorf("applet %s: %w", a, err)
		}
	}
	bins := []string{"/bin/busybox"}
	for _, tl := range baseTools {
		if err := copyTool(t, pool, tl); err != nil {
			return nil, err
		}
		bins = append(bins, tl.to)
	}
	if err := imagebuild.AddLibraries(t, pool, bins); err != nil {
		return nil, fmt.Errorf("base libraries: %w", err)
	}
	return t, nil
}

// copyTool copies the file a package installs at tl.from (through any
// symlink) to tl.to as a regular file with the package's mode and owner.
func copyTool(t, pool *imagebuild.Tree, tl tool) error {
	r, err := pool.Resolve(tl.from)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", tl.from, err)
	}
	e := pool.Get(r)
	if e == nil || e.Kind != imagebuild.KindFile {
		return fmt.Errorf("%s is not a file in the package pool", tl.from)
	}
	in := e.Inode
	if err := t.AddFile(tl.to, in.Data, in.Mode, in.UID, in.GID); err != nil {
		return fmt.Errorf("copy %s: %w", tl.from, err)
	}
	return nil
}

// fileLayer is a tree holding only the given files, each root-owned 0644
// unless it is listed in modes.
func fileLayer(files map[string]string, modes map[string]int64) (*imagebuild.Tree, error) {
	t := imagebuild.NewTree()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode, ok := modes[n]
		if !ok {
			mode = 0o644
		}
		if err := t.AddFile(n, []byte(files[n]), mode, 0, 0); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// buildNNP compiles the nonewprivs program: static (CGO_ENABLED=0) so it
// needs nothing from the image, with paths and build IDs stripped so the
// same Go release gives the same bytes.
func buildNNP(ctx context.Context, source []byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "testimages-nnp-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	files := map[string]string{
		"go.mod":  "module nnp\n\ngo 1.21\n",
		"main.go": string(source),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", n, err)
		}
	}
	out := filepath.Join(dir, "nnp")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64",
		"GOFLAGS=", "GOTOOLCHAIN=local", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build nnp: %w: %s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("read nnp: %w", err)
	}
	return b, nil
}
