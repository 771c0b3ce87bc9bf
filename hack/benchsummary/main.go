// Command benchsummary prints median, p90 and p99 per operation from the JSON files that
// `critest -benchmark -benchmarking-output-dir DIR` writes.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// resultsSet is the part of critest's LifecycleBenchmarksResultsSet that is read here.
type resultsSet struct {
	OperationsNames []string `json:"operationsNames"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

// quantile returns the q-quantile of sorted by the nearest-rank method.
func quantile(sorted []int64, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	idx := int(q*float64(len(sorted))+0.999999) - 1
	idx = max(0, min(idx, len(sorted)-1))
	return time.Duration(sorted[idx])
}

func summarize(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rs resultsSet
	if err := json.Unmarshal(data, &rs); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	fmt.Printf("%s (%d samples)\n", filepath.Base(path), len(rs.Datapoints))
	for i, op := range rs.OperationsNames {
		var ds []int64
		for _, dp := range rs.Datapoints {
			if i < len(dp.OperationsDurationsNs) {
				ds = append(ds, dp.OperationsDurationsNs[i])
			}
		}
		sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
		fmt.Printf("  %-18s median %10s  p90 %10s  p99 %10s\n", op,
			quantile(ds, 0.5).Round(10*time.Microsecond), quantile(ds, 0.9).Round(10*time.Microsecond), quantile(ds, 0.99).Round(10*time.Microsecond))
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchsummary DIR")
		os.Exit(2)
	}
	files, err := filepath.Glob(filepath.Join(os.Args[1], "*.json"))
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "benchsummary: no benchmark results in %s\n", os.Args[1])
		os.Exit(1)
	}
	sort.Strings(files)
	for _, f := range files {
		if err := summarize(f); err != nil {
			fmt.Fprintf(os.Stderr, "benchsummary: %v\n", err)
			os.Exit(1)
		}
	}
}
