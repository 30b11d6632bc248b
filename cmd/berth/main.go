// Command berth is the Berth host daemon and its command-line tools.
//
//	berth serve     run the CRI server and the plugins (foreground)
//	berth config    print the effective configuration
//	berth plugins   list the plugins and their state
//	berth status    print the runtime's CRI status conditions
//	berth version   print versions
//	berth check     check this node for what Berth needs
package main

import (
	"fmt"
	"os"
)

const usage = `usage: berth <command> [flags]

commands:
  serve     run the CRI server and the plugins in the foreground
  config    print the effective configuration, defaults filled in
  plugins   list the plugins: kind, path, version, protocol, capabilities, state
  status    print the runtime's CRI status conditions
  version   print the versions of berth and its plugin protocol
  check     check this node for what berth needs; each line OK or FAIL with the fix

Run 'berth <command> -h' for the command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"serve":   cmdServe,
		"config":  cmdConfig,
		"plugins": cmdPlugins,
		"status":  cmdStatus,
		"version": cmdVersion,
		"check":   cmdCheck,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		if os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
			fmt.Print(usage)
			return
		}
		fmt.Fprintf(os.Stderr, "berth: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "berth %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
