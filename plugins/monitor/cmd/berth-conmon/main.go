// Command berth-conmon is the monitor plugin's per-container supervisor on
// its own: the monitor plugin runs it (from its own directory) for every
// container. It links only the supervisor, so each of these long-lived
// processes costs about a megabyte, not a copy of the plugin's runtime.
package main

import (
	"fmt"
	"os"

	"github.com/berth-cri/berth/plugins/monitor/internal/conmon"
)

func main() {
	if !conmon.MaybeRun() {
		fmt.Fprintln(os.Stderr, "berth-conmon: the monitor plugin runs this program; it is not meant to be run by hand")
		os.Exit(2)
	}
}
