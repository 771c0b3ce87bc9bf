package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/monitor/logs"
	"github.com/cri-mini/cri-mini/pkg/pty"
)

// stdio holds both ends of a container's standard streams while it is created.
type stdio struct {
	child          [3]*os.File // stdin, stdout, stderr as the child gets them
	stdin          *os.File    // monitor's end of stdin, if kept
	stdout, stderr *os.File    // monitor's read ends (stderr nil with a tty)
}

func (io *stdio) closeChild() {
	seen := map[*os.File]bool{}
	for _, f := range io.child {
		if f != nil && !seen[f] {
			seen[f] = true
			_ = f.Close()
		}
	}
}

func (io *stdio) closeMonitor() {
	for _, f := range []*os.File{io.stdin, io.stdout, io.stderr} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// openStdio creates the pipes (or the terminal) for a container.
func openStdio(tty, keepStdin bool) (_ *stdio, retErr error) {
	s := &stdio{}
	defer func() {
		if retErr != nil {
			s.closeChild()
			s.closeMonitor()
		}
	}()
	if tty {
		master, slave, err := pty.Open(false)
		if err != nil {
			return nil, err
		}
		s.child = [3]*os.File{slave, slave, slave}
		s.stdout = master
		if keepStdin {
			// The master is read by the stdout copier and written by attach: a second
			// descriptor lets each be closed on its own.
			fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("dup terminal master: %w", err)
			}
			s.stdin = os.NewFile(uintptr(fd), "ptmx")
		}
		return s, nil
	}
	var err error
	if keepStdin {
		if s.child[0], s.stdin, err = os.Pipe(); err != nil {
			return nil, fmt.Errorf("stdin pipe: %w", err)
		}
	} else if s.child[0], err = os.Open(os.DevNull); err != nil {
		return nil, fmt.Errorf("open %s for stdin: %w", os.DevNull, err)
	}
	if s.stdout, s.child[1], err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	if s.stderr, s.child[2], err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	return s, nil
}

// reserve registers id as being created so that a concurrent create of the same id fails.
func (s *Server) reserve(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, fmt.Errorf("create container %s: %w", id, ErrShuttingDown)
	}
	if _, ok := s.ctrs[id]; ok {
		return nil, fmt.Errorf("create container %s: %w", id, ErrExists)
	}
	c := &container{id: id, dir: ContainerDir(s.dir, id), exited: make(chan struct{})}
	s.ctrs[id] = c // status "" hides it from lookups until created
	s.spawning++
	return c, nil
}

// Create creates a container's process (not yet running its command) with its stdio wired
// to the log file.
func (s *Server) Create(ctx context.Context, id string, opts CreateOptions) (_ ContainerState, retErr error) {
	if err := validID(id); err != nil {
		return ContainerState{}, err
	}
	c, err := s.reserve(id)
	if err != nil {
		return ContainerState{}, err
	}
	c.opts = opts
	var (
		sio  *stdio
		proc Process
	)
	defer func() {
		if retErr == nil {
			return
		}
		if proc != nil {
			_ = proc.Signal(syscall.SIGKILL) // reaped by the reaper, ignored as unknown
			_ = proc.Release()
		}
		if sio != nil {
			sio.closeMonitor()
		}
		if c.log != nil {
			_ = c.log.Close()
		}
		_ = os.RemoveAll(c.dir)
		s.mu.Lock()
		delete(s.ctrs, id)
		s.spawning--
		s.dropUnclaimed()
		s.mu.Unlock()
	}()
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return ContainerState{}, fmt.Errorf("create state directory of container %s: %w", id, err)
	}
	if opts.LogPath != "" {
		if c.log, err = logs.Open(opts.LogPath); err != nil {
			return ContainerState{}, err
		}
	}
	if sio, err = openStdio(opts.TTY, opts.Stdin); err != nil {
		return ContainerState{}, fmt.Errorf("stdio of container %s: %w", id, err)
	}
	proc, err = s.spawner.Create(ctx, SpawnRequest{
		ID: id, Dir: c.dir, Config: opts.Config, TTY: opts.TTY,
		Stdin: sio.child[0], Stdout: sio.child[1], Stderr: sio.child[2],
	})
	// The child has its own copies now; ours would keep the pipes from ever reaching EOF.
	sio.closeChild()
	if err != nil {
		return ContainerState{}, fmt.Errorf("spawn container %s: %w", id, err)
	}
	st := s.register(ctx, c, proc, sio)
	klog.FromContext(ctx).V(2).Info("Created container", "containerID", id, "pid", st.Pid)
	return st, nil
}

// register publishes a spawned container and starts copying its output.
func (s *Server) register(ctx context.Context, c *container, proc Process, sio *stdio) ContainerState {
	c.stdin = sio.stdin
	c.hub = newAttachHub(klog.FromContext(ctx).WithValues("containerID", c.id), c.opts, sio)
	c.startCopy(ctx, &s.wg, sio.stdout, logs.Stdout)
	if sio.stderr != nil {
		c.startCopy(ctx, &s.wg, sio.stderr, logs.Stderr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.proc, c.pid, c.status = proc, proc.Pid(), StatusCreated
	s.spawning--
	if ex, ok := s.unclaimed[c.pid]; ok {
		// It died before we knew its pid.
		delete(s.unclaimed, c.pid)
		s.exitLocked(ctx, c, ex.ws, ex.at)
	} else {
		s.byPid[c.pid] = c
	}
	s.dropUnclaimed()
	return c.state()
}

// dropUnclaimed forgets unknown exits once no create could claim them. Caller holds mu.
func (s *Server) dropUnclaimed() {
	if s.spawning == 0 && len(s.unclaimed) > 0 {
		clear(s.unclaimed)
	}
}

// startCopy copies one output stream into the log until EOF. With a tty both streams are
// one terminal, logged as stdout (CRI).
func (c *container) startCopy(ctx context.Context, wg *sync.WaitGroup, r *os.File, stream string) {
	c.copiers.Add(1)
	wg.Add(1)
	c.hub.addStream()
	go func() {
		defer wg.Done()
		defer c.copiers.Done()
		defer c.hub.streamDone()
		defer r.Close()
		var w io.Writer = io.Discard
		var ls *logs.Stream
		if c.log != nil {
			ls = c.log.NewStream(stream)
			w = ls
		}
		frame := frameStdout
		if stream == logs.Stderr {
			frame = frameStderr
		}
		tap := func(p []byte) { c.hub.broadcast(frame, p) }
		if err := copyOutput(w, r, tap); err != nil {
			klog.FromContext(ctx).Error(err, "Copying container output", "containerID", c.id, "stream", stream)
		}
		if ls != nil {
			if err := ls.Close(); err != nil {
				klog.FromContext(ctx).Error(err, "Flushing container log", "containerID", c.id)
			}
		}
	}()
}

// copyOutput drains r into w and hands every chunk to tap (attached clients). A write error
// is reported once but reading goes on: a full disk must not block the container on a full
// pipe, nor stop what attached clients see.
func copyOutput(w io.Writer, r io.Reader, tap func([]byte)) error {
	buf := make([]byte, 8192)
	var werr error
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil {
			_, werr = w.Write(buf[:n])
		}
		if n > 0 {
			tap(buf[:n])
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, syscall.EIO):
			// EIO: the last holder of the terminal's slave side closed it.
			return werr
		default:
			return errors.Join(werr, fmt.Errorf("read container output: %w", err))
		}
	}
}
