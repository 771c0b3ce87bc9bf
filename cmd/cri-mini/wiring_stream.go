package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/streaming"
)

// streamCloseTimeout bounds how long shutdown waits for exec sessions to end once their
// connections are closed (their processes are killed then).
const streamCloseTimeout = 5 * time.Second

// startStreaming starts the exec/attach/port-forward server over the container and pod
// managers.
func startStreaming(ctx context.Context, cfg config.Config, d *daemon) (*streaming.Server, error) {
	s, err := streaming.Start(ctx, streaming.Options{
		Config:    cfg.Streaming,
		Exec:      d.ctrs,
		Attach:    d.ctrs,
		Sandboxes: d.pods,
	})
	if err != nil {
		return nil, fmt.Errorf("start streaming server: %w", err)
	}
	return s, nil
}

func closeStreaming(s *streaming.Server) error {
	return s.Close(context.Background(), streamCloseTimeout)
}
