package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/pty"
	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// ExecStream runs cmd in the running container wired to a streaming client (CRI Exec):
// the client's stdin feeds the process, its output goes to the client, and with a tty
// the process gets a terminal allocated here whose size follows s.Resize. It returns
// the exit code (128+signal when killed); a non-zero code is not an error. When ctx
// ends (the client went away) the process is killed and the error wraps ctx.Err().
func (m *Manager) ExecStream(ctx context.Context, idOrPrefix string, cmd []string, s StreamIO) (exitCode int32, err error) {
	job, err := m.prepareExec(ctx, idOrPrefix, cmd)
	if err != nil {
		return 0, err
	}
	// A client that stopped reading ends the exec as a client that left does.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var st runtime.ExitStatus
	if s.TTY {
		job.proc.Terminal = true
		st, err = execWithTTY(ctx, cancel, job, s)
	} else {
		st, err = execWithPipes(ctx, cancel, job, s)
	}
	if err != nil {
		return 0, err
	}
	klog.FromContext(ctx).V(4).Info("Exec stream finished", "containerID", job.id, "exitCode", st.Code)
	return int32(st.Code), nil
}

// execWithPipes runs the job with a pipe for each stream the client has.
func execWithPipes(ctx context.Context, clientGone context.CancelFunc, job execJob, s StreamIO) (runtime.ExitStatus, error) {
	var stdio runtime.Stdio
	var childEnds, readEnds []*os.File
	defer func() {
		for _, f := range append(childEnds, readEnds...) {
			_ = f.Close()
		}
	}()
	var stdinW *os.File
	if s.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return runtime.ExitStatus{}, fmt.Errorf("exec in container %s: stdin pipe: %w", job.id, err)
		}
		stdio.Stdin, stdinW = r, w
		childEnds = append(childEnds, r)
		readEnds = append(readEnds, w) // closed on return like the read ends
	}
	outputs := []struct {
		dst io.Writer
		end **os.File
	}{{s.Stdout, &stdio.Stdout}, {s.Stderr, &stdio.Stderr}}
	var outR []*os.File
	for _, o := range outputs {
		if o.dst == nil {
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return runtime.ExitStatus{}, fmt.Errorf("exec in container %s: output pipe: %w", job.id, err)
		}
		*o.end = w
		childEnds = append(childEnds, w)
		readEnds = append(readEnds, r)
		outR = append(outR, r)
	}
	p, err := job.start(ctx, stdio)
	// Our copies of the child's ends must go, or the readers never see EOF.
	for _, f := range childEnds {
		_ = f.Close()
	}
	childEnds = nil
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	klog.FromContext(ctx).V(4).Info("Exec stream started", "containerID", job.id, "pid", p.Pid, "tty", false)
	if stdinW != nil {
		// Not waited for: it ends when the client closes stdin or the connection goes.
		go func() {
			_, _ = io.Copy(stdinW, s.Stdin)
			// The client closed its stdin: the process reads EOF.
			_ = stdinW.Close()
		}()
	}
	var wg sync.WaitGroup
	i := 0
	for _, o := range outputs {
		if o.dst == nil {
			continue
		}
		wg.Add(1)
		go func(dst io.Writer, src *os.File) {
			defer wg.Done()
			copyToClient(dst, src, clientGone)
		}(o.dst, outR[i])
		i++
	}
	st, err := waitExec(ctx, p, job.id, 0)
	drainOutput(&wg, closers(outR)...)
	return st, err
}

// execWithTTY runs the job on a terminal allocated here: its replica side is the
// process's stdio and controlling terminal (the runtime gives the process a session of
// its own), the master side is copied to and from the client.
func execWithTTY(ctx context.Context, clientGone context.CancelFunc, job execJob, s StreamIO) (runtime.ExitStatus, error) {
	master, replica, err := pty.Open(true)
	if err != nil {
		return runtime.ExitStatus{}, fmt.Errorf("exec in container %s: %w", job.id, err)
	}
	defer master.Close()
	// The first size arrives on the resize channel, usually before the process starts:
	// follow it from now on, so that the process never sees the default 0x0.
	resizeDone := make(chan struct{})
	defer close(resizeDone)
	if s.Resize != nil {
		go followResize(ctx, master, s.Resize, resizeDone)
	}
	p, err := job.start(ctx, runtime.Stdio{Stdin: replica, Stdout: replica, Stderr: replica})
	// Our replica must go, or reading the master never ends with EIO when the process does.
	_ = replica.Close()
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	klog.FromContext(ctx).V(4).Info("Exec stream started", "containerID", job.id, "pid", p.Pid, "tty", true)
	if s.Stdin != nil {
		// Not waited for: it ends with the client's stdin or when the master is closed.
		// A terminal has no half-close, so a closed stdin leaves the process running, as
		// kubelet's runtimes do.
		go func() { _, _ = io.Copy(master, s.Stdin) }()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dst := s.Stdout
		if dst == nil {
			dst = discardCloser{}
		}
		// Reading the master ends with EIO once no process holds the replica.
		copyToClient(dst, master, clientGone)
	}()
	st, err := waitExec(ctx, p, job.id, 0)
	drainOutput(&wg, master)
	return st, err
}

// copyToClient copies src to the client's dst. When the client stops taking output the
// exec is ended (clientGone) and src is still drained so that the process never blocks
// on a full pipe before it is killed. A read error (EIO: the terminal's last replica
// closed; a closed file: the drain gave up) is the normal end of the output.
func copyToClient(dst io.Writer, src io.Reader, clientGone context.CancelFunc) {
	r := &readErrs{r: src}
	if _, err := io.Copy(dst, r); err != nil && r.err == nil {
		clientGone()
		_, _ = io.Copy(io.Discard, src)
	}
}

// readErrs remembers whether a copy ended on its reader's side.
type readErrs struct {
	r   io.Reader
	err error
}

func (r *readErrs) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// followResize applies each terminal size the client sends to the master until the
// channel closes or done.
func followResize(ctx context.Context, master *os.File, sizes <-chan TermSize, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			if err := pty.Resize(master, sz.Width, sz.Height); err != nil && !errors.Is(err, os.ErrClosed) {
				klog.FromContext(ctx).V(2).Info("Terminal resize failed", "err", err)
			}
		}
	}
}

func closers(files []*os.File) []io.Closer {
	c := make([]io.Closer, len(files))
	for i, f := range files {
		c[i] = f
	}
	return c
}

type discardCloser struct{}

func (discardCloser) Write(p []byte) (int, error) { return len(p), nil }
func (discardCloser) Close() error                { return nil }
