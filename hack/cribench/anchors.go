package main

import "fmt"

// anchor is containerd 2.4.2 + runc 1.5.2 measured on this machine type (issue 5), and the
// goal set for cri-mini as a fraction of it.
type anchor struct {
	value float64
	goal  float64 // the most cri-mini may use; 0 when there is none
}

type anchorSet map[string]anchor

// issueAnchors are issue 5's figures. Goals: the lifecycle loop at most half, the memory a
// pod costs at most a quarter (1.5 MiB), the daemon idle at or below containerd's.
var issueAnchors = anchorSet{
	"lifecycle loop (crictl)":     {value: 467, goal: 233.5},
	"per-pod processes, per pod":  {value: 5.4}, // shim 5.3 + pause 0.1
	"per pod incl. daemon growth": {value: 6.2, goal: 1.5},
	"daemon idle":                 {value: 27.8, goal: 27.8},
	// Issue 4: critest -benchmark's pod medians; goal half of containerd's.
	"RunPodSandbox":  {value: 94.7, goal: 47.35},
	"StopPodSandbox": {value: 122.8, goal: 61.4},
}

// row prints one measured figure next to its anchor, the ratio and the goal verdict.
func (a anchorSet) row(name string, v float64, unit string) {
	an, ok := a[name]
	if !ok || an.value == 0 {
		fmt.Printf("  %-30s %9.2f %s\n", name, v, unit)
		return
	}
	verdict := ""
	if an.goal > 0 {
		verdict = fmt.Sprintf("goal <= %.1f: ", an.goal)
		if v <= an.goal {
			verdict += "met"
		} else {
			verdict += "NOT met"
		}
	}
	fmt.Printf("  %-30s %9.2f %s  containerd %7.1f  ratio %5.2f  %s\n", name, v, unit, an.value, v/an.value, verdict)
}
