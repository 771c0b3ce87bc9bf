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

// anchorsMs are issue 5's containerd 2.4.2 + runc 1.5.2 medians of the same critest
// benchmark on this machine type, printed next to ours with the ratio.
var anchorsMs = map[string]float64{
	// Issue 4's pod figures (cribench sandbox prints the CNI floor under them).
	"CreatePod":       94.7,
	"StopPod":         122.8,
	"CreateContainer": 5.7,
	"StartContainer":  42.0,
	"StopContainer":   36.8,
	"RemoveContainer": 2.3,
}

func anchorColumn(op string, median time.Duration) string {
	a, ok := anchorsMs[op]
	if !ok {
		return ""
	}
	return fmt.Sprintf("  containerd %6.1fms ratio %5.2f", a, float64(median)/float64(time.Millisecond)/a)
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
		med := quantile(ds, 0.5)
		fmt.Printf("  %-18s median %10s  p90 %10s  p99 %10s%s\n", op,
			med.Round(10*time.Microsecond), quantile(ds, 0.9).Round(10*time.Microsecond), quantile(ds, 0.99).Round(10*time.Microsecond),
			anchorColumn(op, med))
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
