package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/host/config"
)

func TestRuntimeClassBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "myoci")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		ok   bool
		fix  string
	}{
		{"present", map[string]any{"binary": bin}, true, ""},
		{"missing runsc", map[string]any{"binary": filepath.Join(dir, "runsc")}, false, "apt-get install -y runsc"},
		{"missing shim", map[string]any{"shim": "containerd-shim-kata-v2-nonexistent"}, false, "install"},
		{"plugin default", nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := checkRuntimeClass("h", &config.RuntimeClass{Plugin: "p", Config: tc.cfg})
			if r.OK != tc.ok || !strings.Contains(r.Fix, tc.fix) {
				t.Fatalf("%+v", r)
			}
		})
	}
}

func TestCNI(t *testing.T) {
	bins, confs := t.TempDir(), t.TempDir()
	p := &config.Plugin{Config: map[string]any{"bin_dirs": []any{bins}, "conf_dir": confs}}
	res := checkCNI(p)
	if res[0].OK || res[1].OK {
		t.Fatalf("empty dirs pass: %+v", res)
	}
	if !strings.Contains(res[0].Fix, "containernetworking-plugins") || !strings.Contains(res[1].Fix, confs) {
		t.Errorf("fixes: %+v", res)
	}
	os.WriteFile(filepath.Join(bins, "bridge"), nil, 0o755)
	os.WriteFile(filepath.Join(confs, "10-net.conflist"), []byte("{}"), 0o644)
	res = checkCNI(p)
	if !res[0].OK || !res[1].OK {
		t.Fatalf("populated dirs fail: %+v", res)
	}
}

func TestOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting overlay needs root")
	}
	root := t.TempDir()
	if r := checkOverlay(root); !r.OK {
		t.Fatalf("%+v", r)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("check left %v behind", entries)
	}
}

func TestNonDefaultRuntimeClassOnlyWarns(t *testing.T) {
	cfg := config.Default()
	cfg.Plugins = map[string]*config.Plugin{"rt": {Name: "rt", Path: "/nonexistent/rt", Kind: "runtime"}}
	cfg.RuntimeClasses = map[string]*config.RuntimeClass{
		"runc":  {Handler: "runc", Plugin: "rt", Config: map[string]any{"binary": "/nonexistent/runc"}},
		"other": {Handler: "other", Plugin: "rt", Config: map[string]any{"binary": "/nonexistent/other"}},
	}
	for _, r := range Run(cfg) {
		switch r.Name {
		case "runtime class runc":
			if r.OK || r.Warn {
				t.Errorf("default class: %+v, want FAIL", r)
			}
		case "runtime class other":
			if r.OK || !r.Warn {
				t.Errorf("other class: %+v, want WARN", r)
			}
		case "plugin rt":
			if r.OK {
				t.Errorf("missing plugin binary passes: %+v", r)
			}
		}
	}
}
