package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// The protocol on monitor.sock: one JSON Request per line, answered by one JSON Response per
// line, in order. A connection may carry any number of requests; the monitor serves several
// connections at once and keeps serving when one goes away.

// Operations of the protocol.
const (
	opCreate   = "create"
	opStart    = "start"
	opSignal   = "signal"
	opState    = "state"
	opList     = "list"
	opWait     = "wait"
	opReopen   = "reopenLog"
	opRemove   = "remove"
	opShutdown = "shutdown"
	// opAttach turns the connection into a framed stream of one container's stdio
	// (attach.go); no further requests are read on it.
	opAttach = "attach"
)

// maxMessage bounds one request or response line (a container config is tens of KiB).
const maxMessage = 4 << 20

// Request is one line sent to the monitor.
type Request struct {
	Op     string         `json:"op"`
	ID     string         `json:"id,omitempty"`
	Create *CreateOptions `json:"create,omitempty"`
	Signal int            `json:"signal,omitempty"`
	// TimeoutMillis bounds a wait; the client derives it from its context.
	TimeoutMillis int64 `json:"timeoutMillis,omitempty"`
	// AttachStdin makes an attach write the client's stdin to the container's.
	AttachStdin bool `json:"attachStdin,omitempty"`
}

// CreateOptions describe a container to create.
type CreateOptions struct {
	// LogPath is the CRI log file; empty discards the output (it is still drained).
	LogPath string `json:"logPath,omitempty"`
	TTY     bool   `json:"tty,omitempty"`
	// Stdin keeps a pipe (or the terminal) to the container's stdin open in the monitor so
	// that attach can write to it later; without it stdin is /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// StdinOnce closes the container's stdin when the first attached client's stdin ends.
	StdinOnce bool `json:"stdinOnce,omitempty"`
	// Config is passed to the Spawner unread.
	Config json.RawMessage `json:"config,omitempty"`
}

// Container statuses.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// ContainerState is the monitor's view of one container.
type ContainerState struct {
	ID      string      `json:"id"`
	Pid     int         `json:"pid"`
	Status  string      `json:"status"`
	LogPath string      `json:"logPath,omitempty"`
	Exit    *ExitRecord `json:"exit,omitempty"`
}

// Response is one line answered by the monitor.
type Response struct {
	Error  string           `json:"error,omitempty"`
	Kind   string           `json:"kind,omitempty"` // which sentinel Error wraps, if any
	State  *ContainerState  `json:"state,omitempty"`
	States []ContainerState `json:"states,omitempty"`
}

// Sentinel errors of the protocol; they survive the round trip through a Response.
var (
	ErrNotFound     = errors.New("container not found")
	ErrExists       = errors.New("container already exists")
	ErrWrongState   = errors.New("container is in the wrong state")
	ErrShuttingDown = errors.New("monitor is shutting down")
	ErrInvalid      = errors.New("invalid request")
	ErrTimeout      = errors.New("timed out")
)

// ErrGone is wrapped by a client's errors when the monitor is not running any more: nothing
// listens on its socket, or the socket is gone. The client finds it out; the monitor never
// sends it. Its pod's containers then have no monitor: their exits are unrecorded.
var ErrGone = errors.New("monitor is gone")

var sentinels = map[string]error{
	"notFound":     ErrNotFound,
	"exists":       ErrExists,
	"wrongState":   ErrWrongState,
	"shuttingDown": ErrShuttingDown,
	"invalid":      ErrInvalid,
	"timeout":      ErrTimeout,
}

func errorResponse(err error) Response {
	r := Response{Error: err.Error()}
	for k, s := range sentinels {
		if errors.Is(err, s) {
			r.Kind = k
			break
		}
	}
	return r
}

// Err turns an error response back into an error that wraps the same sentinel.
func (r *Response) Err() error {
	if r.Error == "" {
		return nil
	}
	if s, ok := sentinels[r.Kind]; ok {
		return fmt.Errorf("monitor: %s: %w", strings.TrimSuffix(r.Error, ": "+s.Error()), s)
	}
	return fmt.Errorf("monitor: %s", r.Error)
}

// validID refuses ids that could escape the monitor's directory.
func validID(id string) error {
	if id == "" || len(id) > 128 || id != filepath.Base(id) || id == "." || id == ".." ||
		strings.ContainsAny(id, "/\x00\n") {
		return fmt.Errorf("container id %q: %w", id, ErrInvalid)
	}
	return nil
}

// Paths inside a monitor directory.
const (
	SocketName    = "monitor.sock"
	containersDir = "containers"
)

// SocketPath returns the socket of the monitor whose directory is dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketName) }

// ContainerDir returns the state directory (holding the exit record) of container id in the
// monitor directory dir. The daemon reads exit records there when the monitor is gone.
func ContainerDir(dir, id string) string { return filepath.Join(dir, containersDir, id) }
