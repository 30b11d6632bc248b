// Command benchreport summarises critest -benchmark output
// (*_benchmark_data.json): min, median, p90 and max per operation.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// resultsSet is cri-tools' pkg/benchmark LifecycleBenchmarksResultsSet.
type resultsSet struct {
	OperationsNames []string `json:"operationsNames"`
	NumParallel     int      `json:"numParallel"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

func main() {
	dir := flag.String("dir", "", "critest -benchmarking-output-dir")
	flag.Parse()
	files, _ := filepath.Glob(filepath.Join(*dir, "*_benchmark_data.json"))
	sort.Strings(files)
	if len(files) == 0 {
		fmt.Println("critest -benchmark wrote no results (every benchmark failed; see critest-bench.log)")
		return
	}
	fmt.Printf("%-36s %-18s %7s %10s %10s %10s %10s\n", "BENCHMARK", "OPERATION", "SAMPLES", "MIN", "MEDIAN", "P90", "MAX")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			continue
		}
		var rs resultsSet
		if err := json.Unmarshal(b, &rs); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", f, err)
			continue
		}
		for i, op := range rs.OperationsNames {
			var ds []time.Duration
			for _, dp := range rs.Datapoints {
				if i < len(dp.OperationsDurationsNs) {
					ds = append(ds, time.Duration(dp.OperationsDurationsNs[i]))
				}
			}
			if len(ds) == 0 {
				continue
			}
			sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
			pct := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1)+0.5)] }
			fmt.Printf("%-36s %-18s %7d %10s %10s %10s %10s\n", filepath.Base(f), op, len(ds),
				ds[0].Round(10*time.Microsecond), pct(0.5).Round(10*time.Microsecond), pct(0.9).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
		}
	}
}
