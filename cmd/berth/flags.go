package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/berth-cri/berth/host/config"
)

// common are the flags every command that reads the config takes.
type common struct {
	config, listen, root, runroot, logLevel string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", config.DefaultPath, "path of plugins.toml")
	fs.StringVar(&c.listen, "listen", "", "CRI socket path (overrides host.listen)")
	fs.StringVar(&c.root, "root", "", "persistent state directory (overrides host.root)")
	fs.StringVar(&c.runroot, "runroot", "", "runtime state directory (overrides host.runroot)")
	fs.StringVar(&c.logLevel, "log-level", "", "trace, debug, info, warn or error (overrides host.log_level)")
}

// load reads the config and applies the command-line overrides.
func (c *common) load() (*config.Config, error) {
	cfg, err := config.Load(c.config)
	if err != nil {
		if os.IsNotExist(err) && c.config == config.DefaultPath {
			return nil, fmt.Errorf("%w (run `make install`, or pass --config plugins.toml)", err)
		}
		return nil, err
	}
	for _, o := range []struct {
		val string
		dst *string
	}{{c.listen, &cfg.Host.Listen}, {c.root, &cfg.Host.Root}, {c.runroot, &cfg.Host.RunRoot}, {c.logLevel, &cfg.Host.LogLevel}} {
		if o.val != "" {
			*o.dst = o.val
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("after command-line overrides: %w", err)
	}
	return cfg, nil
}

func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet("berth "+name, flag.ContinueOnError)
}

// parseAndLoad parses a command's flags (the common ones plus those extra
// adds) and loads the config with the overrides applied.
func parseAndLoad(name string, args []string, extra func(*flag.FlagSet)) (*config.Config, error) {
	var c common
	fs := newFlags(name)
	c.register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return c.load()
}
