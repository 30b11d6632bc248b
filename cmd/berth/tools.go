package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/check"
	"github.com/berth-cri/berth/host/config"
	"github.com/berth-cri/berth/host/cri"
	"github.com/berth-cri/berth/host/plugins"
	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/sdk"
)

func cmdConfig(args []string) error {
	cfg, err := parseAndLoad("config", args, nil)
	if err != nil {
		return err
	}
	out, err := cfg.Encode()
	if err != nil {
		return err
	}
	fmt.Printf("# effective configuration (from %s, defaults filled in)\n%s", cfg.Path, out)
	return nil
}

func cmdVersion(args []string) error {
	fs := newFlags("version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Printf("berth %s (commit %s, %s)\n", version.Version, version.Commit, runtime.Version())
	fmt.Printf("CRI API: v1 (k8s.io/cri-api)\n")
	fmt.Printf("plugin SDK: %s, protocol versions %v\n", sdk.Version, config.HostProtocolVersions)
	return nil
}

func cmdCheck(args []string) error {
	cfg, err := parseAndLoad("check", args, nil)
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range check.Run(cfg) {
		fmt.Println(r)
		if !r.OK && !r.Warn {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	return nil
}

// grpcConn connects to the daemon's socket.
func grpcConn(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// dialCRI returns a RuntimeService client on the daemon's socket.
func dialCRI(socket string) (runtimeapi.RuntimeServiceClient, func(), error) {
	conn, err := grpcConn(socket)
	if err != nil {
		return nil, nil, err
	}
	return runtimeapi.NewRuntimeServiceClient(conn), func() { conn.Close() }, nil
}

func daemonStatus(socket string, verbose bool) (*runtimeapi.StatusResponse, error) {
	client, done, err := dialCRI(socket)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return client.Status(ctx, &runtimeapi.StatusRequest{Verbose: verbose})
}

func cmdStatus(args []string) error {
	cfg, err := parseAndLoad("status", args, nil)
	if err != nil {
		return err
	}
	st, err := daemonStatus(cfg.Host.Listen, false)
	if err != nil {
		return fmt.Errorf("ask the daemon on %s: %w", cfg.Host.Listen, err)
	}
	notReady := 0
	for _, cond := range st.GetStatus().GetConditions() {
		if cond.Status {
			fmt.Printf("%-14s true\n", cond.Type)
			continue
		}
		notReady++
		fmt.Printf("%-14s false  %s: %s\n", cond.Type, cond.Reason, cond.Message)
	}
	if notReady > 0 {
		return errors.New("not ready")
	}
	return nil
}

func cmdPlugins(args []string) error {
	var asJSON *bool
	cfg, err := parseAndLoad("plugins", args, func(fs *flag.FlagSet) { asJSON = fs.Bool("json", false, "print JSON") })
	if err != nil {
		return err
	}
	snaps, err := pluginsFromDaemon(cfg.Host.Listen)
	if err != nil {
		// No daemon: describe the binaries themselves.
		fmt.Fprintf(os.Stderr, "berth plugins: daemon on %s not reachable (%v); describing the binaries instead\n", cfg.Host.Listen, err)
		snaps = describeBinaries(cfg)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(snaps)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tPATH\tVERSION\tPROTOCOL\tSTATE\tHEALTH\tCAPABILITIES")
	for _, s := range snaps {
		health := "healthy"
		if !s.Healthy {
			health = s.Reason
		}
		proto := "-"
		if s.Protocol > 0 {
			proto = fmt.Sprint(s.Protocol)
		}
		caps := strings.Join(s.Capabilities, ",")
		if caps == "" {
			caps = "(none yet)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.Path, orDash(s.PluginVersion), proto, s.State, health, caps)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pluginsFromDaemon(socket string) ([]plugins.Snapshot, error) {
	st, err := daemonStatus(socket, true)
	if err != nil {
		return nil, err
	}
	var byName map[string]plugins.Snapshot
	if err := json.Unmarshal([]byte(st.GetInfo()[cri.VerbosePluginsKey]), &byName); err != nil {
		return nil, fmt.Errorf("decode plugin table: %w", err)
	}
	snaps := make([]plugins.Snapshot, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		snaps = append(snaps, byName[name])
	}
	return snaps, nil
}

// describeBinaries runs each plugin binary with "describe".
func describeBinaries(cfg *config.Config) []plugins.Snapshot {
	var out []plugins.Snapshot
	for _, name := range cfg.PluginNames() {
		p := cfg.Plugins[name]
		s := plugins.Snapshot{Name: name, Kind: p.Kind, Path: cfg.PluginPath(p), State: "not running", Capabilities: []string{}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := exec.CommandContext(ctx, s.Path, "describe").Output()
		cancel()
		var d struct {
			PluginVersion    string   `json:"plugin_version"`
			SDKVersion       string   `json:"sdk_version"`
			ProtocolVersions []int    `json:"protocol_versions"`
			Capabilities     []string `json:"capabilities"`
		}
		if err == nil {
			err = json.Unmarshal(b, &d)
		}
		if err != nil {
			s.Reason, s.Message = "DescribeFailed", err.Error()
		} else {
			s.PluginVersion, s.SDKVersion, s.Capabilities = d.PluginVersion, d.SDKVersion, d.Capabilities
			if len(d.ProtocolVersions) > 0 {
				s.Protocol = d.ProtocolVersions[0]
			}
		}
		out = append(out, s)
	}
	return out
}
