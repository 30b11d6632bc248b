// Command report turns critest's ginkgo JSON report into Berth's
// conformance report: counts, one line per failure with its first error
// line, one line per skip with its reason, and the wall time.
//
//	go run ./test/conformance/report -json critest.json -wall 812s > report.txt
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// The parts of ginkgo v2's types.Report that the report uses.
type suite struct {
	SuiteDescription string
	RunTime          time.Duration
	SpecReports      []spec
}

type spec struct {
	ContainerHierarchyTexts []string
	LeafNodeType            string
	LeafNodeText            string
	State                   string
	RunTime                 time.Duration
	Failure                 *struct {
		Message  string
		Location struct {
			FileName   string
			LineNumber int
		}
	}
}

func (s spec) name() string {
	return strings.TrimSpace(strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " "))
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func main() {
	in := flag.String("json", "", "ginkgo JSON report")
	wall := flag.String("wall", "", "wall time of the whole run, for the report")
	cmd := flag.String("command", "make conformance", "the command that produced the run")
	flag.Parse()
	b, err := os.ReadFile(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	var suites []suite
	if err := json.Unmarshal(b, &suites); err != nil {
		fmt.Fprintln(os.Stderr, "report: decode:", err)
		os.Exit(1)
	}
	var passed, failed, skipped []spec
	var suiteTime time.Duration
	for _, s := range suites {
		suiteTime += s.RunTime
		for _, sp := range s.SpecReports {
			if sp.LeafNodeType != "It" {
				// Suite-level nodes count only when they fail.
				if sp.State != "passed" && sp.State != "skipped" {
					failed = append(failed, sp)
				}
				continue
			}
			switch sp.State {
			case "passed":
				passed = append(passed, sp)
			case "skipped", "pending":
				skipped = append(skipped, sp)
			default:
				failed = append(failed, sp)
			}
		}
	}
	byName := func(xs []spec) {
		sort.Slice(xs, func(i, j int) bool { return xs[i].name() < xs[j].name() })
	}
	byName(failed)
	byName(skipped)
	fmt.Printf("critest (cri-tools v1.37.0) against Berth, %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Printf("command: %s\n", *cmd)
	fmt.Printf("specs: %d passed, %d failed, %d skipped (of %d)\n", len(passed), len(failed), len(skipped), len(passed)+len(failed)+len(skipped))
	if *wall != "" {
		fmt.Printf("wall time: %s (suite %s)\n", *wall, suiteTime.Round(time.Second))
	}
	fmt.Printf("\nFAILED (%d)\n", len(failed))
	for _, f := range failed {
		msg := ""
		if f.Failure != nil {
			msg = firstLine(f.Failure.Message)
		}
		fmt.Printf("- [%s] %s: %s\n", f.State, f.name(), msg)
	}
	fmt.Printf("\nSKIPPED (%d)\n", len(skipped))
	for _, s := range skipped {
		reason := "not selected (--ginkgo.focus/--ginkgo.skip)"
		if s.Failure != nil && strings.TrimSpace(s.Failure.Message) != "" {
			reason = firstLine(s.Failure.Message)
		}
		fmt.Printf("- %s: %s\n", s.name(), reason)
	}
}
