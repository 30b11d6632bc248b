// Command berth-cni is Berth's pod network plugin.
package main

import (
	"github.com/berth-cri/berth/plugins/cni/cniplugin"
	"github.com/berth-cri/berth/sdk"
)

func main() { sdk.ServeNetwork(cniplugin.New()) }
