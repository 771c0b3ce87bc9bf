package container

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cri-mini/cri-mini/pkg/monitor"
)

// signalCaught tells whether process pid has a handler installed for sig, from the SigCgt
// mask in /proc/<pid>/status.
func signalCaught(pid int, sig syscall.Signal) (bool, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		mask, ok := strings.CutPrefix(s.Text(), "SigCgt:")
		if !ok {
			continue
		}
		bits, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
		if err != nil {
			return false, fmt.Errorf("parse SigCgt of pid %d: %w", pid, err)
		}
		return bits&(1<<(uint(sig)-1)) != 0, nil
	}
	if err := s.Err(); err != nil {
		return false, err
	}
	return false, fmt.Errorf("no SigCgt in /proc/%d/status", pid)
}

// handlerPollInterval is how often a stopping container is checked for a late signal handler.
const handlerPollInterval = 20 * time.Millisecond

// resendWhenCaught covers a stop signal that reached the container's process before the
// process installed its handler. The process is PID 1 of its PID namespace, and the kernel
// drops signals that such an init has no handler for (pid_namespaces(7)): a SIGTERM sent in
// the milliseconds between exec and the handler's installation (a StopContainer right after
// StartContainer) is lost, and the stop would wait for its whole grace period. caughtBefore is
// whether the handler existed when the signal was sent; if it did not, the process is watched
// and, once a handler appears, the signal is sent once more. A process that never installs one
// is left to the grace period and SIGKILL, as with any runtime. The returned func ends the
// watch and waits for it.
func resendWhenCaught(ctx context.Context, cl *monitor.Client, c Container, sig syscall.Signal, caughtBefore bool) (stop func()) {
	if caughtBefore || c.Pid <= 0 {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(handlerPollInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			caught, err := signalCaught(c.Pid, sig)
			if err != nil {
				return // the process is gone
			}
			if caught {
				_, _ = cl.Signal(ctx, c.ID, sig)
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
