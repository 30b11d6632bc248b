// Command berth-overlay is Berth's image and root filesystem plugin.
package main

import (
	"github.com/berth-cri/berth/plugins/overlay/overlayplugin"
	"github.com/berth-cri/berth/sdk"
)

func main() { sdk.ServeStorage(overlayplugin.New()) }
