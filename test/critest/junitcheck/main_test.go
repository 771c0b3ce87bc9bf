package main

import (
	"reflect"
	"testing"
)

func TestParseExpected(t *testing.T) {
	exps, err := parseExpected("# comment\n\nImage Manager.*digest # needs the upstream bytes\nA|B # reason with # inside? no: last ' # ' splits\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(exps) != 2 || exps[0].reason != "needs the upstream bytes" || exps[0].line != 3 {
		t.Fatalf("got %+v", exps)
	}
	for _, bad := range []string{"no reason here\n", "x # \n", "([ # bad regex\n"} {
		if _, err := parseExpected(bad); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}

func TestCheck(t *testing.T) {
	exps, err := parseExpected("pull by digest # upstream bytes\nnever runs # stale\nstill broken # not built yet\n")
	if err != nil {
		t.Fatal(err)
	}
	fail := &struct{}{}
	cases := []testcase{
		{Name: "ok spec", Status: "passed"},
		{Name: "pull by digest", Status: "failed", Failure: fail},
		{Name: "still broken now works", Status: "passed"},
		{Name: "new regression", Status: "failed", Failure: fail},
		{Name: "benchmark", Status: "skipped", Skipped: fail},
	}
	r := check(cases, exps)
	if !reflect.DeepEqual(r.unexpectedFailures, []string{"new regression"}) {
		t.Errorf("unexpected failures = %v", r.unexpectedFailures)
	}
	if len(r.unexpectedPasses) != 1 || r.expectedFailures != 1 {
		t.Errorf("unexpected passes = %v, expected failures = %d", r.unexpectedPasses, r.expectedFailures)
	}
	if len(r.passed) != 2 || len(r.failed) != 2 || len(r.skipped) != 1 {
		t.Errorf("counts passed %d failed %d skipped %d", len(r.passed), len(r.failed), len(r.skipped))
	}
}
