package main

import (
	"reflect"
	"testing"
)

func TestPerPodProcs(t *testing.T) {
	procs := map[int]proc{
		1:  {pid: 1, ppid: 0, exe: "/sbin/init"},
		10: {pid: 10, ppid: 1, exe: "/usr/bin/cri-mini"},                 // the daemon
		11: {pid: 11, ppid: 10, exe: "/usr/bin/cri-mini"},                // a monitor
		12: {pid: 12, ppid: 11, exe: "/bin/busybox"},                     // its container
		13: {pid: 13, ppid: 11, exe: "/memfd:cri-mini (deleted)"},        // a pod init
		14: {pid: 14, ppid: 1, exe: "/usr/bin/cri-mini"},                 // another daemon's
		15: {pid: 15, ppid: 10, exe: "/opt/cni/bin/bridge"},              // a plugin being run
		16: {pid: 16, ppid: 12, exe: "/work/other/_output/bin/cri-mini"}, // an exec helper
	}
	var got []int
	for _, p := range perPodProcs(10, procs) {
		got = append(got, p.pid)
	}
	if want := []int{11, 13, 16}; !reflect.DeepEqual(got, want) {
		t.Errorf("perPodProcs = %v, want %v", got, want)
	}
	if got := perPodProcs(99, procs); len(got) != 0 {
		t.Errorf("perPodProcs of a pid without children = %v, want none", got)
	}
}
