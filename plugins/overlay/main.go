// Command berth-overlay is Berth's image and root filesystem plugin.
package main

import (
	"github.com/berth-cri/berth/plugins/overlay/overlayplugin"
	"github.com/berth-cri/berth/sdk"
	"go.podman.io/storage/pkg/reexec"
)

func main() {
	// containers/storage re-executes this binary for some layer operations.
	if reexec.Init() {
		return
	}
	sdk.ServeStorage(overlayplugin.New())
}
