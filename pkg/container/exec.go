package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// MaxExecOutput caps each of stdout and stderr kept by ExecSync, as containerd does:
// the rest is read and dropped so the process never blocks on a full pipe.
const MaxExecOutput = 16 << 20

// execDrainGrace bounds how long ExecSync keeps reading output after the process ended:
// a background child that inherited the pipes could keep them open forever.
const execDrainGrace = 2 * time.Second

// ExecSync runs cmd in the running container and returns its output and exit code. A
// non-zero exit is not an error. With timeout > 0 the process is killed at the timeout and
// the error wraps context.DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, idOrPrefix string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error) {
	job, err := m.prepareExec(ctx, idOrPrefix, cmd)
	if err != nil {
		return nil, nil, 0, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("exec in container %s: stdout pipe: %w", job.id, err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outW.Close()
		return nil, nil, 0, fmt.Errorf("exec in container %s: stderr pipe: %w", job.id, err)
	}
	defer errR.Close()
	p, err := job.start(ctx, runtime.Stdio{Stdout: outW, Stderr: errW})
	// Our copies of the write ends must go, or the readers never see EOF.
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		return nil, nil, 0, err
	}
	logger := klog.FromContext(ctx).WithValues("containerID", job.id, "pid", p.Pid)
	logger.V(4).Info("Exec started", "cmd", cmd)

	var outBuf, errBuf capBuffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&outBuf, outR) }()
	go func() { defer wg.Done(); _, _ = io.Copy(&errBuf, errR) }()

	st, err := waitExec(ctx, p, job.id, timeout)
	// The process is reaped; wait a little for the output it wrote, then stop reading
	// if something else still holds the pipes.
	drainOutput(&wg, outR, errR)
	if err != nil {
		return outBuf.Bytes(), errBuf.Bytes(), 0, err
	}
	logger.V(4).Info("Exec finished", "exitCode", st.Code)
	return outBuf.Bytes(), errBuf.Bytes(), int32(st.Code), nil
}

// execJob is a checked exec request: the container it joins and the process to run there.
type execJob struct {
	id     string
	proc   *specs.Process
	target runtime.ExecTarget
}

// prepareExec checks that cmd can run in the container now: a command, a running
// container with a stored spec.
func (m *Manager) prepareExec(ctx context.Context, idOrPrefix string, cmd []string) (execJob, error) {
	if len(cmd) == 0 {
		return execJob{}, fmt.Errorf("exec: empty command: %w", store.ErrInvalidArgument)
	}
	e, err := m.lookup(idOrPrefix)
	if err != nil {
		return execJob{}, err
	}
	c := e.get()
	if c.State != StateRunning {
		return execJob{}, fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, store.ErrFailedPrecondition)
	}
	if c.Spec == nil || c.Spec.Process == nil {
		return execJob{}, fmt.Errorf("exec in container %s: no stored spec: %w", c.ID, store.ErrFailedPrecondition)
	}
	return execJob{
		id:   c.ID,
		proc: execProcess(c.Spec.Process, cmd),
		target: runtime.ExecTarget{
			Pid: c.Pid, CgroupPath: c.CgroupPath, Cgroups: m.o.Cgroups, StartedBy: c.StartedAt,
			Seccomp: runtime.SpecSeccomp(c.Spec), Exe: m.execExe(ctx),
		},
	}, nil
}

// start runs the job's process with stdio; a container that stopped meanwhile is a
// failed precondition.
func (j execJob) start(ctx context.Context, stdio runtime.Stdio) (*runtime.Process, error) {
	p, err := runtime.ExecIn(ctx, j.target, j.proc, stdio)
	if err != nil {
		if errors.Is(err, runtime.ErrNotRunning) {
			err = fmt.Errorf("%w: %w", err, store.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("exec in container %s: %w", j.id, err)
	}
	return p, nil
}

// waitExec waits for the exec'd process p of container id. At the timeout (when > 0) or
// when ctx ends it kills p, waits for it, and returns an error wrapping the reason.
func waitExec(ctx context.Context, p *runtime.Process, id string, timeout time.Duration) (runtime.ExitStatus, error) {
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	// Exited is closed by the first Wait: reap in the background while watching the rest.
	go func() { _, _ = p.Wait() }()
	var failure error
	select {
	case <-p.Exited():
	case <-timer:
		failure = fmt.Errorf("exec in container %s: timeout %v: %w", id, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		failure = fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
	if failure != nil {
		if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			klog.FromContext(ctx).Error(err, "Killing exec process", "containerID", id, "pid", p.Pid)
		}
	}
	st, err := p.Wait()
	if failure != nil {
		return st, failure
	}
	if err != nil {
		return st, fmt.Errorf("exec in container %s: %w", id, err)
	}
	return st, nil
}

// drainOutput waits for the output copies in wg once the process ended, at most
// execDrainGrace: a background child that inherited the output could hold it open
// forever. Closing the read ends then ends the copies.
func drainOutput(wg *sync.WaitGroup, readEnds ...io.Closer) {
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(execDrainGrace):
		for _, c := range readEnds {
			_ = c.Close()
		}
		<-drained
	}
}

// execProcess is the container's process with cmd as its arguments and no terminal: the
// user, environment, working dir, capabilities and limits stay the container's.
func execProcess(base *specs.Process, cmd []string) *specs.Process {
	p := *base
	p.Args = append([]string(nil), cmd...)
	p.Terminal = false
	p.ConsoleSize = nil
	return &p
}

// capBuffer keeps the first MaxExecOutput bytes written and drops the rest, still
// reporting every write as complete so that the copy keeps draining the pipe.
type capBuffer struct {
	b []byte
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := MaxExecOutput - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Bytes returns what was kept; it is only read after the copy ended.
func (c *capBuffer) Bytes() []byte { return c.b }
