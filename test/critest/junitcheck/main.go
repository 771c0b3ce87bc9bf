// Command junitcheck compares a critest JUnit report with the list of expected failures.
//
// Each non-comment line of the list is "<regex> # <reason>": a spec whose full name matches the
// regex is expected to fail, for that reason. The check fails on a failure the list does not
// name, and on a listed spec that passed, so the list always tells the truth about cri-mini.
// It prints "N passed, N failed, N skipped" as its last line.
package main

import (
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

type testsuites struct {
	Suites []testsuite `xml:"testsuite"`
}

type testsuite struct {
	Cases []testcase `xml:"testcase"`
}

type testcase struct {
	Name    string    `xml:"name,attr"`
	Status  string    `xml:"status,attr"`
	Failure *struct{} `xml:"failure"`
	Error   *struct{} `xml:"error"`
	Skipped *struct{} `xml:"skipped"`
}

// expectation is one line of the expected-failures list.
type expectation struct {
	line    int
	pattern *regexp.Regexp
	reason  string
	matched bool
}

func parseExpected(data string) ([]*expectation, error) {
	var out []*expectation
	for i, raw := range strings.Split(data, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		idx := strings.LastIndex(line, " # ")
		if idx < 0 {
			return nil, fmt.Errorf("line %d: want \"<regex> # <reason>\", got %q", i+1, line)
		}
		pat, reason := strings.TrimSpace(line[:idx]), strings.TrimSpace(line[idx+3:])
		if reason == "" {
			return nil, fmt.Errorf("line %d: empty reason", i+1)
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, &expectation{line: i + 1, pattern: re, reason: reason})
	}
	return out, nil
}

type result struct {
	passed, failed, skipped []string
	unexpectedFailures      []string
	unexpectedPasses        []string
	expectedFailures        int
}

func outcome(c testcase) string {
	switch {
	case c.Failure != nil || c.Error != nil || c.Status == "failed" || c.Status == "panicked" ||
		c.Status == "interrupted" || c.Status == "timedout" || c.Status == "aborted":
		return "failed"
	case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
		return "skipped"
	default:
		return "passed"
	}
}

func check(cases []testcase, exps []*expectation) result {
	var r result
	for _, c := range cases {
		var exp *expectation
		for _, e := range exps {
			if e.pattern.MatchString(c.Name) {
				exp = e
				e.matched = true
				break
			}
		}
		switch outcome(c) {
		case "failed":
			r.failed = append(r.failed, c.Name)
			if exp == nil {
				r.unexpectedFailures = append(r.unexpectedFailures, c.Name)
			} else {
				r.expectedFailures++
			}
		case "skipped":
			r.skipped = append(r.skipped, c.Name)
		default:
			r.passed = append(r.passed, c.Name)
			if exp != nil {
				r.unexpectedPasses = append(r.unexpectedPasses, fmt.Sprintf("%s (expected-failures line %d: %s)", c.Name, exp.line, exp.reason))
			}
		}
	}
	return r
}

func run(junitPath, expectedPath string) error {
	data, err := os.ReadFile(junitPath)
	if err != nil {
		return fmt.Errorf("read junit report: %w", err)
	}
	var ts testsuites
	if err := xml.Unmarshal(data, &ts); err != nil {
		return fmt.Errorf("parse junit report %s: %w", junitPath, err)
	}
	var cases []testcase
	for _, s := range ts.Suites {
		cases = append(cases, s.Cases...)
	}
	if len(cases) == 0 {
		return errors.New("the junit report has no test cases: critest did not run")
	}
	expData, err := os.ReadFile(expectedPath)
	if err != nil {
		return fmt.Errorf("read expected failures: %w", err)
	}
	exps, err := parseExpected(string(expData))
	if err != nil {
		return fmt.Errorf("%s: %w", expectedPath, err)
	}
	r := check(cases, exps)
	for _, e := range exps {
		if !e.matched {
			fmt.Printf("note: expected-failures line %d matches no spec that ran: %s\n", e.line, e.pattern)
		}
	}
	sort.Strings(r.unexpectedFailures)
	sort.Strings(r.unexpectedPasses)
	for _, n := range r.unexpectedFailures {
		fmt.Printf("UNEXPECTED FAILURE: %s\n", n)
	}
	for _, n := range r.unexpectedPasses {
		fmt.Printf("UNEXPECTED PASS (remove it from the list): %s\n", n)
	}
	fmt.Printf("critest: %d specs ran, %d expected failures\n", len(cases)-len(r.skipped), r.expectedFailures)
	fmt.Printf("%d passed, %d failed, %d skipped\n", len(r.passed), len(r.failed), len(r.skipped))
	if len(r.unexpectedFailures) > 0 || len(r.unexpectedPasses) > 0 {
		return fmt.Errorf("%d unexpected failures, %d unexpected passes", len(r.unexpectedFailures), len(r.unexpectedPasses))
	}
	return nil
}

func main() {
	junit := flag.String("junit", "", "critest JUnit report")
	expected := flag.String("expected", "", "expected-failures list")
	flag.Parse()
	if *junit == "" || *expected == "" {
		fmt.Fprintln(os.Stderr, "usage: junitcheck -junit FILE -expected FILE")
		os.Exit(2)
	}
	if err := run(*junit, *expected); err != nil {
		fmt.Fprintf(os.Stderr, "junitcheck: %v\n", err)
		os.Exit(1)
	}
}
