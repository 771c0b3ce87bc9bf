package idlefree

import (
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
