// Command berth-pod-init is PID 1 of a runc pod's PID namespace on its own:
// it reaps the pod's orphans and exits on SIGTERM. The runc plugin runs it
// (from its own directory) once per pod that has a PID namespace; it links
// only the init, so each pod pays about a megabyte for it.
package main

import (
	"fmt"
	"os"

	"github.com/berth-cri/berth/plugins/runc/internal/sandbox"
)

func main() {
	if !sandbox.MaybeRunInit() {
		fmt.Fprintln(os.Stderr, "berth-pod-init: the runc plugin runs this program; it is not meant to be run by hand")
		os.Exit(2)
	}
}
