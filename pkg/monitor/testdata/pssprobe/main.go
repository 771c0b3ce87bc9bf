// Command pssprobe is the monitor linked into a small static binary, built by the memory
// test to measure what one monitor costs. With -tags heavy it also links (and initialises)
// the daemon's heaviest dependencies, as the real cri-mini binary does.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/cri-mini/cri-mini/pkg/monitor"
)

func main() {
	// os.Args: [binary, "monitor", flags...], as Launch runs it.
	os.Exit(monitor.Main(os.Args[2:], spawner{}))
}

// spawner runs the configured command as an ordinary child, blocked on a start pipe.
type spawner struct{}

type process struct {
	p     *os.Process
	start *os.File
}

func (spawner) Create(_ context.Context, req monitor.SpawnRequest) (monitor.Process, error) {
	var cfg struct {
		Args []string `json:"args"`
	}
	if err := json.Unmarshal(req.Config, &cfg); err != nil || len(cfg.Args) == 0 {
		return nil, fmt.Errorf("config %q: %v", req.Config, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	script := `read -r _ <&3 || exit 126; exec 3<&-; exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, cfg.Args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, req.Stdout, req.Stderr
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return nil, err
	}
	return &process{p: cmd.Process, start: w}, nil
}

func (p *process) Pid() int { return p.p.Pid }

func (p *process) Start() error {
	if _, err := p.start.Write([]byte("go\n")); err != nil {
		return err
	}
	return p.start.Close()
}

func (p *process) Signal(sig syscall.Signal) error { return p.p.Signal(sig) }

func (p *process) Release() error {
	if err := p.start.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return p.p.Release()
}
