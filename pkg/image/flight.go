package image

import (
	"context"
	"sync"
)

// flightGroup runs one call per key at a time and shares its result with every caller that
// asks for the same key meanwhile: two pulls of the same image, or of images sharing a layer,
// download each blob once.
//
// The call runs on a context detached from its first caller, so one caller giving up does not
// fail the others; it is cancelled only when every caller has given up.
type flightGroup[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int
	cancel  context.CancelFunc
}

func newFlightGroup[T any]() *flightGroup[T] {
	return &flightGroup[T]{calls: map[string]*flight[T]{}}
}

// Do runs fn for key unless a call for key is in progress, and waits for its result or for
// ctx to end.
func (g *flightGroup[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	g.mu.Lock()
	f, ok := g.calls[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight[T]{done: make(chan struct{}), cancel: cancel}
		g.calls[key] = f
		go func() {
			v, err := fn(fctx)
			g.mu.Lock()
			f.val, f.err = v, err
			if g.calls[key] == f {
				delete(g.calls, key)
			}
			g.mu.Unlock()
			cancel()
			close(f.done)
		}()
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		last := f.waiters == 0
		if last {
			// Nobody wants the result any more: stop the work, and let a later caller start
			// afresh instead of joining a call that is being cancelled.
			f.cancel()
			if g.calls[key] == f {
				delete(g.calls, key)
			}
		}
		g.mu.Unlock()
		if last {
			// The last caller waits for the cancelled work to wind down, so that when it returns
			// nothing of its attempt (temp dirs, half-written layers) is left behind.
			<-f.done
		}
		var zero T
		return zero, context.Cause(ctx)
	}
}
