package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The child of Create and Exec finds these descriptors (exec.Cmd.ExtraFiles order).
const (
	fdConfig = 3 // pipe: the child's JSON config, written once the child is in its cgroup
	fdSync   = 4 // socket: ready / start / error messages
	fdExe    = 5 // the sealed binary itself (see sealedSelf); fdMount follows for exec
	fdMount  = 6 // exec helper only: the container's mount namespace
)

// Subcommand names of the binary's hidden entry points.
const (
	InitCommand       = "init"
	ExecHelperCommand = "exec-helper"
)

// childConfig is everything a child needs; it travels as JSON over fdConfig.
type childConfig struct {
	Spec *specs.Spec `json:"spec,omitempty"` // init: the whole container spec
	// Process is the exec helper's process (the container's spec is not needed).
	Process *specs.Process `json:"process,omitempty"`
	// Seccomp is the exec helper's filter: the container's, as runc gives exec'd processes.
	Seccomp *specs.LinuxSeccomp `json:"seccomp,omitempty"`
	// MountSources maps the index of a bind mount in Spec.Mounts to the init's descriptor
	// of its source (a detached mount: see mountSources), for a container in a user
	// namespace.
	MountSources map[int]int `json:"mountSources,omitempty"`
}

type msgType string

const (
	msgReady msgType = "ready" // child → parent: set up, waiting for start
	msgStart msgType = "start" // parent → child: exec the process
	msgError msgType = "error" // child → parent: setup or exec failed
)

type message struct {
	Type  msgType `json:"type"`
	Error string  `json:"error,omitempty"`
}

func writeMsg(w io.Writer, m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send %s message: %w", m.Type, err)
	}
	return nil
}

// errChildGone means the child closed its end: it exec'd (after start) or died.
var errChildGone = errors.New("child closed the sync channel")

func readMsg(d *json.Decoder) (message, error) {
	var m message
	if err := d.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return m, errChildGone
		}
		return m, fmt.Errorf("read sync message: %w", err)
	}
	return m, nil
}

// syncPair returns the parent's and the child's ends of a stream socket pair, both
// close-on-exec in this process (exec.Cmd dups the child's end into the child).
func syncPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create sync socket pair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "sync-parent"), os.NewFile(uintptr(fds[1]), "sync-child"), nil
}

// readChildConfig reads and closes the config pipe of a child.
func readChildConfig() (*childConfig, error) {
	f := os.NewFile(fdConfig, "config")
	defer f.Close()
	var c childConfig
	if err := json.NewDecoder(f).Decode(&c); err != nil {
		return nil, fmt.Errorf("read config from parent: %w", err)
	}
	return &c, nil
}
