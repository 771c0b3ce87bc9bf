package monitor

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// ReapLoop reaps every child of the process (the monitor is a subreaper, so orphans of the
// containers are reparented to it and must be reaped too) until ctx is done. SIGCHLD only
// says "at least one child changed": each one drains all exits with WNOHANG.
func (s *Server) ReapLoop(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	for {
		s.reapAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func (s *Server) reapAll(ctx context.Context) {
	// Bounded by the number of exited children; each iteration reaps one.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none exited
		}
		s.onExit(ctx, pid, syscall.WaitStatus(ws), time.Now())
	}
}

func (s *Server) onExit(ctx context.Context, pid int, ws syscall.WaitStatus, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byPid[pid]
	if !ok {
		if s.spawning > 0 {
			s.unclaimed[pid] = unclaimedExit{ws: ws, at: at}
		}
		return
	}
	delete(s.byPid, pid)
	s.exitLocked(ctx, c, ws, at)
}

// exitLocked finishes a container whose process was reaped: after its output is drained
// (bounded), the exit record is written, and only then is the exit visible to anyone, so no
// client can see "exited" without a durable record. Caller holds mu.
func (s *Server) exitLocked(ctx context.Context, c *container, ws syscall.WaitStatus, at time.Time) {
	rec := ExitFromWaitStatus(c.pid, ws, at)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		log := klog.FromContext(ctx).WithValues("containerID", c.id, "pid", c.pid)
		// Here, not under mu: the OOM counter is a cgroup file read.
		if r, ok := c.proc.(OOMReporter); ok && r.OOMKilled() {
			rec.OOMKilled = true
		}
		drained := make(chan struct{})
		go func() { c.copiers.Wait(); close(drained) }()
		t := time.NewTimer(drainTimeout)
		select {
		case <-drained:
		case <-t.C:
			log.Info("Container output still open after exit; recording the exit anyway")
		}
		t.Stop()
		if err := WriteExit(c.dir, rec); err != nil {
			// Still report the exit: the daemon caches it; only a monitor crash loses it.
			log.Error(err, "Writing exit record")
		}
		if err := c.proc.Release(); err != nil {
			log.Error(err, "Releasing container process")
		}
		s.mu.Lock()
		c.exit, c.status = &rec, StatusExited
		s.mu.Unlock()
		close(c.exited)
		log.V(2).Info("Container exited", "exitCode", rec.ExitCode, "signal", rec.Signal)
		s.activity()
	}()
}
