// Command berth-gvisor-keeper runs, for the runc plugin's gVisor pods, a
// container's create command and then stays as its keeper (it holds the
// container's stdio until it starts and waits for its exit; see
// plugins/runc/internal/gvisor). It links only that code, so each gVisor
// container pays a few megabytes less than a re-executed plugin binary.
package main

import (
	"fmt"
	"os"

	"github.com/berth-cri/berth/plugins/runc/internal/gvisor"
)

func main() {
	if !gvisor.MaybeRun() {
		fmt.Fprintln(os.Stderr, "berth-gvisor-keeper: the runc plugin runs this program; it is not meant to be run by hand")
		os.Exit(2)
	}
}
