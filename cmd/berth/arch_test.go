package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/berth-cri/berth"

// deps lists the module's own packages that pkgs depend on.
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var own []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, module+"/") {
			own = append(own, strings.TrimPrefix(p, module+"/"))
		}
	}
	return own
}

// TestArchitecture keeps the plugin boundary visible in the tree: the host
// reaches plugins only through the sdk module, and plugins never reach into
// the host.
func TestArchitecture(t *testing.T) {
	for _, p := range deps(t, "./cmd/berth", "./host/...") {
		if strings.HasPrefix(p, "plugins/") {
			t.Errorf("the host depends on plugin package %s; use the sdk instead", p)
		}
	}
	for _, p := range deps(t, "./plugins/...", "./cmd/berth-plugins") {
		if strings.HasPrefix(p, "host/") || p == "cmd/berth" {
			t.Errorf("a plugin depends on host package %s", p)
		}
	}
	// The sdk is its own module and depends on nothing of Berth's.
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./...")
	cmd.Dir = "../../sdk"
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list in sdk: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, module+"/") && !strings.HasPrefix(p, module+"/sdk") {
			t.Errorf("the sdk depends on %s", p)
		}
	}
}
