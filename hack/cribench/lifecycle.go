package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// crictlRunner runs crictl against one endpoint, one process per step, as an operator (and
// the anchor measurement of containerd) does: each step pays crictl's own start-up too.
type crictlRunner struct {
	crictl, endpoint, dir string
}

func (r *crictlRunner) run(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--runtime-endpoint", r.endpoint, "--image-endpoint", r.endpoint, "--timeout", "60s"}, args...)
	cmd := exec.CommandContext(ctx, r.crictl, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// podConfig and containerConfig are the crictl JSON inputs of iteration i: a fresh pod name
// and UID each time, busybox sleeping (the container stays running until stopped).
// kubeletNamespaces is what kubelet sends for a pod that does not share its process
// namespace: a PID namespace per container (NamespaceMode CONTAINER = 1). Without it the CRI's
// zero value asks for one PID namespace for the pod, and with it the pod's init process.
var kubeletNamespaces = map[string]any{"namespace_options": map[string]any{"pid": 1}}

func podConfig(name string, logDir string) map[string]any {
	return map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "cribench", "uid": name + "-uid", "attempt": 0},
		"log_directory": logDir,
		"linux":         map[string]any{"security_context": kubeletNamespaces},
	}
}

func containerConfig(name string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": busybox},
		"command":  []string{"sleep", "3600"},
		"log_path": name + ".log",
		"linux":    map[string]any{"security_context": kubeletNamespaces},
	}
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// lifecycleStep is one crictl command of the loop; args may use {pod} and {ctr}.
type lifecycleStep struct {
	name string
	args []string
}

var lifecycleSteps = []lifecycleStep{
	{"runp", []string{"runp", "{podjson}"}},
	{"create", []string{"create", "--no-pull", "{pod}", "{ctrjson}", "{podjson}"}},
	{"start", []string{"start", "{ctr}"}},
	{"stop", []string{"stop", "{ctr}"}},
	{"rm", []string{"rm", "{ctr}"}},
	{"stopp", []string{"stopp", "{pod}"}},
	{"rmp", []string{"rmp", "{pod}"}},
}

// lifecycleBench times n iterations of the whole pod lifecycle with crictl (runp, create,
// start, stop, rm, stopp, rmp) and returns the loop's samples followed by each step's.
func lifecycleBench(ctx context.Context, r *crictlRunner, n int) ([]*samples, error) {
	loop := &samples{name: "lifecycle loop (crictl)"}
	steps := make([]*samples, len(lifecycleSteps))
	for i, s := range lifecycleSteps {
		steps[i] = &samples{name: "  crictl " + s.name}
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("cribench-loop-%d-%d", os.Getpid(), i)
		podJSON := filepath.Join(r.dir, name+"-pod.json")
		ctrJSON := filepath.Join(r.dir, name+"-ctr.json")
		if err := writeJSON(podJSON, podConfig(name, filepath.Join(r.dir, "logs", name))); err != nil {
			return nil, err
		}
		if err := writeJSON(ctrJSON, containerConfig("sleeper")); err != nil {
			return nil, err
		}
		vars := map[string]string{"{podjson}": podJSON, "{ctrjson}": ctrJSON}
		start := time.Now()
		for j, s := range lifecycleSteps {
			args := make([]string, len(s.args))
			for k, a := range s.args {
				if v, ok := vars[a]; ok {
					a = v
				}
				args[k] = a
			}
			var out string
			if err := timed(steps[j], func() error {
				var err error
				out, err = r.run(ctx, args...)
				return err
			}); err != nil {
				return nil, err
			}
			switch s.name {
			case "runp":
				vars["{pod}"] = out
			case "create":
				vars["{ctr}"] = out
			}
		}
		loop.ds = append(loop.ds, time.Since(start))
	}
	return append([]*samples{loop}, steps...), nil
}

// crictlFloor times crictl's own start-up (`crictl --version`: no connection, no RPC) n
// times, and returns it with the loop's floor: one start-up per step. Whatever the runtime,
// the crictl loop cannot be faster than that floor on this machine.
func crictlFloor(ctx context.Context, r *crictlRunner, n int) ([]*samples, error) {
	startup := &samples{name: "crictl start-up (--version)"}
	for i := 0; i < n; i++ {
		if err := timed(startup, func() error {
			return exec.CommandContext(ctx, r.crictl, "--version").Run()
		}); err != nil {
			return nil, err
		}
	}
	floor := &samples{name: fmt.Sprintf("  × %d steps: the loop's floor", len(lifecycleSteps))}
	for _, d := range startup.ds {
		floor.ds = append(floor.ds, d*time.Duration(len(lifecycleSteps)))
	}
	return []*samples{startup, floor}, nil
}
