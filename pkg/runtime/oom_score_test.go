package runtime

import "testing"

func TestClampOOMScoreAdj(t *testing.T) {
	floor := OOMScoreAdjFloor()
	if floor < -1000 || floor > 1000 {
		t.Fatalf("floor %d outside [-1000, 1000]", floor)
	}
	for _, req := range []int{-1000, -1, 0, 500, 1000} {
		if got := clampOOMScoreAdj(req); got != max(req, floor) {
			t.Errorf("request %d (floor %d): got %d", req, floor, got)
		}
	}
}
