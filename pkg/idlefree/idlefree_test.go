package idlefree

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestReleaseRunsAfterActivity(t *testing.T) {
	done := make(chan struct{}, 10)
	r := newReleaser(10*time.Millisecond, func() { done <- struct{}{} })
	defer r.Stop()
	for range 5 {
		r.Touch()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no release after the process went quiet")
	}
	// Activity after a release arms it again.
	r.Touch()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no release after the second burst")
	}
}

func TestReleaseCoalescesAndStops(t *testing.T) {
	var n atomic.Int32
	r := newReleaser(time.Hour, func() { n.Add(1) })
	for range 100 {
		r.Touch()
	}
	r.Stop()
	r.Touch() // after Stop: ignored, must not arm a timer
	if r.timer == nil || n.Load() != 0 {
		t.Fatalf("want one pending timer and no release yet, got timer=%v releases=%d", r.timer != nil, n.Load())
	}
	if r.timer.Stop() {
		t.Fatal("Stop left the release pending")
	}
}

func TestReleaseOnlyAfterACollection(t *testing.T) {
	var h heapWatch
	runtime.GC()
	if !h.worthReleasing() {
		t.Fatal("a collection ran since the last release, but no release is due")
	}
	h.released()
	if h.lastCycles == 0 {
		t.Fatal("released() recorded no collection after runtime.GC")
	}
	// No collection since: nothing to release. (A collection the runtime starts on its own
	// in between would make this a release, so only check that a new one is seen.)
	runtime.GC()
	if !h.worthReleasing() {
		t.Fatal("a second collection is not seen")
	}
}
