package monitor

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/monitor/logs"
)

// drainTimeout bounds how long an exit waits for the container's output to be drained into
// the log before the exit record is written: a leaked grandchild may hold the pipe open
// forever, and the exit must still be reported.
const drainTimeout = 2 * time.Second

// Server holds the containers of one pod. All fields behind mu.
type Server struct {
	dir     string
	spawner Spawner

	mu       sync.Mutex
	ctrs     map[string]*container
	byPid    map[int]*container
	spawning int // creates in flight; while > 0 unknown exits are kept for them
	// unclaimed holds exits of pids reaped before their Create registered them (the child
	// can exit before Spawner.Create returns its pid). Only kept while spawning > 0, so a
	// recycled pid of an old orphan cannot be mistaken for a new container.
	unclaimed map[int]unclaimedExit
	closing   bool
	wg        sync.WaitGroup // exit finishers and log copiers

	// onActivity, when set, is told about every answered request and recorded exit (the
	// monitor process uses it to release memory once it is idle again).
	onActivity func()
}

type unclaimedExit struct {
	ws syscall.WaitStatus
	at time.Time
}

type container struct {
	id, dir string
	opts    CreateOptions
	proc    Process
	pid     int
	status  string
	exit    *ExitRecord
	exited  chan struct{} // closed once the exit record is written
	log     *logs.File    // nil when output is discarded
	stdin   *os.File      // monitor's end of stdin (pipe write end or pty master), or nil
	hub     *attachHub    // attached clients; set before the container is published
	copiers sync.WaitGroup
}

// NewServer returns a server keeping its state under dir.
func NewServer(dir string, sp Spawner) *Server {
	return &Server{
		dir:       dir,
		spawner:   sp,
		ctrs:      map[string]*container{},
		byPid:     map[int]*container{},
		unclaimed: map[int]unclaimedExit{},
	}
}

// activity reports that the monitor did some work.
func (s *Server) activity() {
	if s.onActivity != nil {
		s.onActivity()
	}
}

func (c *container) state() ContainerState {
	st := ContainerState{ID: c.id, Pid: c.pid, Status: c.status, LogPath: c.opts.LogPath}
	if c.exit != nil {
		e := *c.exit
		st.Exit = &e
	}
	return st
}

// lookup returns the container or ErrNotFound. Caller holds mu.
func (s *Server) lookup(id string) (*container, error) {
	c, ok := s.ctrs[id]
	if !ok || c.status == "" {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
	}
	return c, nil
}

// Start lets a created container run.
func (s *Server) Start(ctx context.Context, id string) (ContainerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookup(id)
	if err != nil {
		return ContainerState{}, err
	}
	if c.status != StatusCreated {
		return c.state(), fmt.Errorf("start container %s in status %s: %w", id, c.status, ErrWrongState)
	}
	if err := c.proc.Start(); err != nil {
		return c.state(), fmt.Errorf("start container %s: %w", id, err)
	}
	c.status = StatusRunning
	klog.FromContext(ctx).V(2).Info("Started container", "containerID", id, "pid", c.pid)
	return c.state(), nil
}

// Signal sends sig to a container's process. Signalling an exited container succeeds without
// effect: stopping something already gone is not an error.
func (s *Server) Signal(ctx context.Context, id string, sig syscall.Signal) (ContainerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookup(id)
	if err != nil {
		return ContainerState{}, err
	}
	// c.exit is set under mu by the finisher, and byPid loses the pid when it is reaped:
	// a reaped process is never signalled, so a recycled pid is never hit.
	if c.exit != nil || s.byPid[c.pid] != c {
		return c.state(), nil
	}
	if err := c.proc.Signal(sig); err != nil {
		return c.state(), fmt.Errorf("signal %d to container %s: %w", sig, id, err)
	}
	klog.FromContext(ctx).V(2).Info("Signalled container", "containerID", id, "signal", int(sig))
	return c.state(), nil
}

// State returns one container's state.
func (s *Server) State(id string) (ContainerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookup(id)
	if err != nil {
		return ContainerState{}, err
	}
	return c.state(), nil
}

// List returns every container's state.
func (s *Server) List() []ContainerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ContainerState, 0, len(s.ctrs))
	for _, c := range s.ctrs {
		if c.status != "" {
			out = append(out, c.state())
		}
	}
	return out
}

// Wait blocks until the container has exited (its record written) or timeout passes.
func (s *Server) Wait(id string, timeout time.Duration) (ContainerState, error) {
	s.mu.Lock()
	c, err := s.lookup(id)
	s.mu.Unlock()
	if err != nil {
		return ContainerState{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.exited:
		return s.State(id)
	case <-t.C:
		st, _ := s.State(id)
		return st, fmt.Errorf("wait for container %s: %w", id, ErrTimeout)
	}
}

// ReopenLog reopens the container's log file after kubelet rotated it.
func (s *Server) ReopenLog(id string) (ContainerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookup(id)
	if err != nil {
		return ContainerState{}, err
	}
	if c.log == nil {
		return c.state(), nil
	}
	if err := c.log.Reopen(); err != nil {
		return c.state(), fmt.Errorf("reopen log of container %s: %w", id, err)
	}
	return c.state(), nil
}

// Remove forgets an exited container and deletes its state directory. A created container
// that never started is killed first; a running one must be stopped by the caller.
func (s *Server) Remove(ctx context.Context, id string) error {
	s.mu.Lock()
	c, err := s.lookup(id)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	switch {
	case c.status == StatusRunning:
		s.mu.Unlock()
		return fmt.Errorf("remove running container %s: %w", id, ErrWrongState)
	case c.status == StatusCreated && s.byPid[c.pid] == c:
		_ = c.proc.Signal(syscall.SIGKILL)
	}
	s.mu.Unlock()
	// Bounded: SIGKILL of a created process ends it, unless it is stuck in the kernel.
	if _, err := s.Wait(id, 10*time.Second); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.ctrs, id)
	s.mu.Unlock()
	c.closeIO()
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove state of container %s: %w", id, err)
	}
	klog.FromContext(ctx).V(2).Info("Removed container", "containerID", id)
	return nil
}

// closeIO closes the monitor's ends of the container's stdio and its log once the copiers
// are done (or given up on).
func (c *container) closeIO() {
	if c.stdin != nil {
		_ = c.stdin.Close()
	}
	if c.log != nil {
		_ = c.log.Close()
	}
}

// KillAll sends SIGKILL to every live container and waits (bounded) for their exits to be
// recorded: the pod is going away.
func (s *Server) KillAll(ctx context.Context, timeout time.Duration) {
	s.mu.Lock()
	s.closing = true
	var live []*container
	for _, c := range s.ctrs {
		if c.status != "" && c.exit == nil && s.byPid[c.pid] == c {
			_ = c.proc.Signal(syscall.SIGKILL)
			live = append(live, c)
		}
	}
	s.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, c := range live {
		select {
		case <-c.exited:
		case <-deadline.C:
			klog.FromContext(ctx).Info("Containers did not exit after SIGKILL", "timeout", timeout)
			return
		}
	}
}
