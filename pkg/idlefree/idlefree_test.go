package idlefree

import (
	"runtime"
	"runtime/debug"
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
	var collections atomic.Int64
	released := make(chan struct{}, 10)
	r := newAfterCollection(5*time.Millisecond, collections.Load, func() {
		collections.Add(1) // a release runs a collection itself
		released <- struct{}{}
	})
	defer r.Stop()
	quiet := func() bool {
		r.Touch()
		select {
		case <-released:
			return false
		case <-time.After(200 * time.Millisecond):
			return true
		}
	}
	if !quiet() {
		t.Fatal("released with no collection since the process started")
	}
	collections.Add(1)
	if quiet() {
		t.Fatal("no release after a collection")
	}
	if !quiet() {
		t.Fatal("released again with no collection but its own")
	}
	collections.Add(2)
	if quiet() {
		t.Fatal("no release after two more collections")
	}
}

func TestGCCounter(t *testing.T) {
	// No collection the runtime starts on its own may interfere.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	count := gcCounter()
	before := count()
	if again := count(); again != before {
		t.Fatalf("collections counted %d then %d with none run", before, again)
	}
	runtime.GC()
	if after := count(); after != before+1 {
		t.Fatalf("collections counted %d after runtime.GC, %d before", after, before)
	}
}
