// Command berth-kata is Berth's VM-isolated runtime plugin.
package main

import (
	"github.com/berth-cri/berth/plugins/kata/kataplugin"
	"github.com/berth-cri/berth/sdk"
)

func main() { sdk.ServeRuntime(kataplugin.New()) }
