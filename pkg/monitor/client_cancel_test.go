package monitor

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRequestOfAGoneCallerIsNotSent: a request whose context has already ended is not sent.
// The deadline that stops the I/O used to be set by a goroutine, so the request usually went
// out first: the monitor created or started a container its caller had been told failed.
func TestRequestOfAGoneCallerIsNotSent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, c, _ := startMonitor(t, ctx)
	gone, cancelGone := context.WithCancel(ctx)
	cancelGone()
	for i := range 20 {
		if _, err := c.Create(gone, "late", CreateOptions{Config: config("sleep", "60")}); !errors.Is(err, context.Canceled) {
			t.Fatalf("create %d with a cancelled context = %v, want context.Canceled", i, err)
		}
		if list, err := c.List(ctx); err != nil || len(list) != 0 {
			t.Fatalf("after create %d with a cancelled context the monitor has %+v (%v)", i, list, err)
		}
	}
}
