// Command berth-runc is Berth's OCI runtime plugin, built the way a vendor
// builds a plugin: a main that hands its implementation to the SDK.
package main

import (
	"github.com/berth-cri/berth/plugins/runc/runcplugin"
	"github.com/berth-cri/berth/sdk"
)

func main() {
	if runcplugin.MaybeRunSubcommand() {
		return
	}
	sdk.ServeRuntime(runcplugin.New())
}
