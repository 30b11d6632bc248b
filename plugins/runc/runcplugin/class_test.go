package runcplugin

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// fakeRuntime puts an executable named name in a fresh directory.
func fakeRuntime(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho fake\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClassFor(t *testing.T) {
	p := New()
	if err := p.Configure(context.Background(), sdk.Config{Raw: json.RawMessage(`{}`), RunDir: "/run/x"}); err != nil {
		t.Fatal(err)
	}
	runsc, runc := fakeRuntime(t, "runsc"), fakeRuntime(t, "runc")
	class := func(cfg string) (*runtimeClass, error) {
		return p.classFor(&runtimev1.RuntimeOptions{Handler: "h", ConfigJson: []byte(cfg)})
	}
	c, err := class(`{"binary":"` + runsc + `","runtime_args":["--network=host","--platform=ptrace"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.gvisor || c.rt.Binary != runsc || c.rt.Root != "/run/x/state/runsc" {
		t.Errorf("runsc class: %+v %+v", c, c.rt)
	}
	if got, want := c.rt.Global(), []string{"--root", "/run/x/state/runsc", "--network=host", "--platform=ptrace"}; !reflect.DeepEqual(got, want) {
		t.Errorf("global flags %v, want %v", got, want)
	}
	// The model follows the binary's name unless set.
	if c, err := class(`{"binary":"` + runc + `"}`); err != nil || c.gvisor {
		t.Errorf("runc class: %+v %v", c, err)
	}
	if c, err := class(`{"binary":"` + runc + `","sandbox":"gvisor"}`); err != nil || !c.gvisor {
		t.Errorf("explicit gvisor: %+v %v", c, err)
	}
	if c, err := class(`{"binary":"` + runsc + `","sandbox":"namespaces"}`); err != nil || c.gvisor {
		t.Errorf("explicit namespaces: %+v %v", c, err)
	}
	// Strict: unknown keys, wrong types, bad values are InvalidArgument
	// naming the class and the key.
	for cfg, want := range map[string]string{
		`{"binary":"` + runsc + `","runtime_arg":["--network=host"]}`:    `unknown field "runtime_arg"`,
		`{"binary":"` + runsc + `","runtime_args":"--network=host"}`:     "runtime_args",
		`{"binary":"` + runsc + `","runtime_args":["--network","host"]}`: `runtime_args[1]: "host" is not a flag`,
		`{"binary":"` + runsc + `","runtime_args":["--root=/tmp"]}`:      `runtime_args[0]: "--root=/tmp" is set by Berth`,
		`{"binary":"` + runsc + `","runtime_args":["-"]}`:                `runtime_args[0]: "-" is not a flag`,
		`{"binary":"` + runsc + `","sandbox":"vm"}`:                      `sandbox: "vm" is not one of`,
	} {
		_, err := class(cfg)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `runtime class "h"`) {
			t.Errorf("%s: %v, want InvalidArgument with %q", cfg, err, want)
		}
	}
	if _, err := class(`{"binary":"/nonexistent/runsc"}`); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("missing binary: %v", err)
	}
}
