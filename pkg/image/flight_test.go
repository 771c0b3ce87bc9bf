package image

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlightGroup(t *testing.T) {
	g := newFlightGroup[int]()
	var runs atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		runs.Add(1)
		select {
		case <-release:
			return 42, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	var wg sync.WaitGroup
	results := make([]int, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := g.Do(context.Background(), "k", fn)
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	// Let every caller join before releasing; bounded wait.
	for i := 0; i < 200 && func() int { g.mu.Lock(); defer g.mu.Unlock(); return g.calls["k"].waitersOrZero() }() < 5; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if runs.Load() != 1 {
		t.Fatalf("fn ran %d times, want 1", runs.Load())
	}
	for _, r := range results {
		if r != 42 {
			t.Fatalf("results %v", results)
		}
	}

	// A caller that gives up cancels the call when it was the only one.
	cancelled := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := g.Do(ctx, "slow", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		cancelled <- ctx.Err()
		return 0, ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("call ctx err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("abandoned call was not cancelled")
	}
}

func (f *flight[T]) waitersOrZero() int {
	if f == nil {
		return 0
	}
	return f.waiters
}
