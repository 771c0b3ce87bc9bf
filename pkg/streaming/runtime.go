package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// Execer runs exec sessions; *container.Manager is one.
type Execer interface {
	ExecStream(ctx context.Context, idOrPrefix string, cmd []string, s container.StreamIO) (int32, error)
}

// Attacher attaches streams to a container's main process; *container.Manager is one.
type Attacher interface {
	Attach(ctx context.Context, idOrPrefix string, s container.StreamIO) error
}

// Sandboxes finds pods; *sandbox.Manager is one.
type Sandboxes interface {
	Get(idOrPrefix string) (*sandbox.Sandbox, error)
}

// runtimeAdapter is the cri-streaming Runtime over cri-mini's managers.
type runtimeAdapter struct {
	o Options
}

// Exec runs cmd in the container. A non-zero exit is returned as a utilexec.ExitError,
// which the remotecommand server sends to the client as the exit code (kubectl exits
// with it); any other error is reported as an internal error.
func (a *runtimeAdapter) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if a.o.Exec == nil {
		return fmt.Errorf("exec: not configured: %w", store.ErrFailedPrecondition)
	}
	code, err := a.o.Exec.ExecStream(ctx, containerID, cmd, streamIO(ctx, in, out, errOut, tty, resize))
	if err != nil {
		return err
	}
	if code != 0 {
		// Unwrapped: the server checks the error's type, not its chain.
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
	}
	return nil
}

// Attach connects the streams to the container's main process.
func (a *runtimeAdapter) Attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if a.o.Attach == nil {
		return errors.New("attach: not supported by this build")
	}
	return a.o.Attach.Attach(ctx, containerID, streamIO(ctx, in, out, errOut, tty, resize))
}

// streamIO converts the server's streams. Resize events are relayed until the server
// closes its channel or ctx ends.
func streamIO(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) container.StreamIO {
	s := container.StreamIO{Stdin: in, Stdout: out, Stderr: errOut, TTY: tty}
	if resize != nil {
		ch := make(chan container.TermSize)
		go func() {
			defer close(ch)
			for sz := range resize {
				select {
				case ch <- container.TermSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}()
		s.Resize = ch
	}
	return s
}
