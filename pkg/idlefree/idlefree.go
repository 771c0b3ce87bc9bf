// Package idlefree hands a process's freed heap back to the kernel once the process has gone
// quiet after a burst of work.
//
// cri-mini's processes are idle nearly all the time, between bursts (a pod started, a
// container created). A burst leaves freed pages in the Go heap, and the runtime's
// background scavenger returns them slowly: it keeps about a tenth over the heap goal, and
// the goal never drops below a floor of 4 MiB × GOGC/100. One release costs a garbage
// collection, which for a monitor's heap of a few hundred KiB is well under a millisecond.
//
// For a process whose heap stays small, a release is not always worth it. A process's first
// collection makes the runtime allocate metadata it keeps for life: a 4 KiB span-set block
// for every size class in use, and mark bitmaps. Measured in a pod's monitor after one
// container create and start (under 300 KiB allocated in all, no collection yet): 0.98 MiB
// of anonymous memory, 1.37 MiB once a release forced the first collection. NewAfterCollection
// releases only when the runtime collected on its own since the last release: its metadata
// is paid, and the pages that collection freed are still resident. A heap that never grew
// enough to collect holds less garbage than a forced first collection would cost.
package idlefree

import (
	"runtime/debug"
	"sync"
	"time"
)

// Releaser runs a release (debug.FreeOSMemory) once no activity was reported for a delay.
type Releaser struct {
	delay   time.Duration
	release func()
	mu      sync.Mutex
	timer   *time.Timer // nil until the first touch
	stopped bool
}

// New returns a Releaser that frees the heap's unused memory delay after the last Touch.
func New(delay time.Duration) *Releaser {
	return newReleaser(delay, debug.FreeOSMemory)
}

// NewAfterCollection returns a Releaser like New's that releases only when the runtime ran a
// collection since the last release (see the package comment).
func NewAfterCollection(delay time.Duration) *Releaser {
	return newAfterCollection(delay, gcCounter(), debug.FreeOSMemory)
}

// newAfterCollection releases when count, the runtime's collections, moved since the last
// release. The lock covers check, release and record: a timer's function may start while the
// previous one still runs.
func newAfterCollection(delay time.Duration, count func() int64, release func()) *Releaser {
	var mu sync.Mutex
	var last int64 // collections counted after the last release (which ran one itself)
	return newReleaser(delay, func() {
		mu.Lock()
		defer mu.Unlock()
		if count() == last {
			return
		}
		release()
		last = count()
	})
}

// gcCounter returns a function that reads how many collections the runtime completed. Its
// stats are reused: the first read allocates their pause history (about 10 KiB) once, where
// runtime/metrics would cost every process linking this package a 30 KiB table at start-up.
// Not safe for concurrent use.
func gcCounter() func() int64 {
	var stats debug.GCStats
	return func() int64 {
		debug.ReadGCStats(&stats)
		return stats.NumGC
	}
}

func newReleaser(delay time.Duration, release func()) *Releaser {
	return &Releaser{delay: delay, release: release}
}

// Touch records activity: the release runs delay after the last Touch.
func (r *Releaser) Touch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopped:
	case r.timer == nil:
		r.timer = time.AfterFunc(r.delay, r.release)
	default:
		r.timer.Reset(r.delay)
	}
}

// Stop cancels a pending release; later touches do nothing (the process is exiting).
func (r *Releaser) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
}
