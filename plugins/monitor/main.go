// Command berth-monitor is Berth's container supervision plugin.
package main

import (
	"github.com/berth-cri/berth/plugins/monitor/monitorplugin"
	"github.com/berth-cri/berth/sdk"
)

func main() {
	if monitorplugin.MaybeRunSubcommand() {
		return
	}
	sdk.ServeMonitor(monitorplugin.New())
}
