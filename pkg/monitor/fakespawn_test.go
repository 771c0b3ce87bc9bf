package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// execSpawner creates ordinary child processes in place of containers: the child (a shell)
// blocks reading a start pipe, like a container init waiting for StartContainer, then execs
// the configured command. It stands in for pkg/runtime's spawner in these tests.
type execSpawner struct{}

// fakeConfig is the Config the tests send through the monitor to execSpawner.
type fakeConfig struct {
	Args []string `json:"args"`
}

type execProcess struct {
	p     *os.Process
	start *os.File // write end of the start pipe
}

func (execSpawner) Create(_ context.Context, req SpawnRequest) (Process, error) {
	var cfg fakeConfig
	if err := json.Unmarshal(req.Config, &cfg); err != nil || len(cfg.Args) == 0 {
		return nil, fmt.Errorf("fake config %q: %v", req.Config, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// Exit 126 when the start pipe closes without a start byte: a released, never started
	// process must not run its command.
	script := `read -r _ <&3 || exit 126; exec 3<&-; exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, cfg.Args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, req.Stdout, req.Stderr
	cmd.ExtraFiles = []*os.File{r}
	cmd.Dir = req.Dir
	if req.TTY {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return nil, err
	}
	// Never cmd.Wait: the monitor reaps with wait4(-1).
	return &execProcess{p: cmd.Process, start: w}, nil
}

func (p *execProcess) Pid() int { return p.p.Pid }

func (p *execProcess) Start() error {
	if _, err := p.start.Write([]byte("go\n")); err != nil {
		return err
	}
	return p.start.Close()
}

func (p *execProcess) Signal(sig syscall.Signal) error { return p.p.Signal(sig) }

func (p *execProcess) Release() error {
	if err := p.start.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return p.p.Release()
}
