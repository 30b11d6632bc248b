// Command berth-plugins is the multi-call binary of Berth's first-party
// plugins. `make build` hard-links it as berth-runc, berth-kata,
// berth-overlay, berth-cni and berth-monitor; it serves the plugin named by
// the name it was run as (or by its first argument). Each plugin is still
// its own process, started, versioned and checksummed by the host through
// go-plugin, but the processes share this binary's pages, which is most of
// an idle Go process's memory.
//
// This binary is not the host: the host (cmd/berth) reaches plugins only
// through the sdk module.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berth-cri/berth/plugins/cni/cniplugin"
	"github.com/berth-cri/berth/plugins/kata/kataplugin"
	"github.com/berth-cri/berth/plugins/monitor/monitorplugin"
	"github.com/berth-cri/berth/plugins/overlay/overlayplugin"
	"github.com/berth-cri/berth/plugins/runc/runcplugin"
	"github.com/berth-cri/berth/sdk"
	"go.podman.io/storage/pkg/reexec"
)

var plugins = map[string]func(){
	"berth-runc":    func() { sdk.ServeRuntime(runcplugin.New()) },
	"berth-kata":    func() { sdk.ServeRuntime(kataplugin.New()) },
	"berth-overlay": func() { sdk.ServeStorage(overlayplugin.New()) },
	"berth-cni":     func() { sdk.ServeNetwork(cniplugin.New()) },
	"berth-monitor": func() { sdk.ServeMonitor(monitorplugin.New()) },
}

func main() {
	// containers/storage re-executes this binary for some layer operations;
	// this must come first.
	if reexec.Init() || runcplugin.MaybeRunSubcommand() || monitorplugin.MaybeRunSubcommand() {
		return
	}
	name := filepath.Base(os.Args[0])
	if serve, ok := plugins[name]; ok {
		serve()
		return
	}
	if len(os.Args) > 1 {
		if serve, ok := plugins["berth-"+strings.TrimPrefix(os.Args[1], "berth-")]; ok {
			os.Args = append(os.Args[:1], os.Args[2:]...)
			serve()
			return
		}
	}
	names := make([]string, 0, len(plugins))
	for n := range plugins {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "berth-plugins: run me as one of %s (a hard link or symlink), or as `berth-plugins NAME`\n", strings.Join(names, ", "))
	os.Exit(2)
}
