// Command registry builds the critest look-alike images (package
// ../images) and serves them from a registry on a loopback address until
// SIGINT/SIGTERM, with a registries.conf that maps registry.k8s.io,
// k8s.gcr.io and gcr.io to it (a location remap, so nothing can fall back to
// the real hosts). Used by hack/conformance.sh.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/berth-cri/berth/internal/testimages"
	"github.com/berth-cri/berth/test/conformance/images"
)

func main() {
	var (
		addr      = flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
		busybox   = flag.String("busybox", "", "Debian's dynamically linked busybox binary")
		libs      = flag.String("libs", "", "comma-separated shared libraries busybox needs")
		helpers   = flag.String("helpers", "", "directory holding the pause, webserver and nnp helpers")
		regConf   = flag.String("registries-conf", "", "where to write registries.conf")
		readyFile = flag.String("ready", "", "file to write the registry's host:port to once serving")
	)
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.") && !strings.HasPrefix(*addr, "[::1]") {
		fail("refusing a non-loopback address %q", *addr)
	}
	t := &testimages.ProgramT{Name: "conformance-registry"}
	defer t.RunCleanups()
	imgs := images.Build(t, images.Inputs{
		Busybox: *busybox, Libs: strings.Split(*libs, ","),
		Pause: *helpers + "/pause", Webserver: *helpers + "/webserver", NNP: *helpers + "/nnp",
	})
	reg, srv, err := testimages.ServeRegistry(*addr)
	if err != nil {
		fail("serve: %v", err)
	}
	defer srv.Close()
	for _, name := range images.Names(imgs) {
		host, rest := images.Split(name)
		repo, tag, _ := strings.Cut(rest, ":")
		reg.Push(t, host+"/"+repo, imgs[name], tag)
	}
	var conf strings.Builder
	conf.WriteString("# Written by test/conformance/registry: critest's registries, remapped to loopback.\nunqualified-search-registries = []\nshort-name-mode = \"disabled\"\n")
	for _, host := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io"} {
		fmt.Fprintf(&conf, "\n[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", host, reg.Host+"/"+host)
	}
	if err := os.WriteFile(*regConf, []byte(conf.String()), 0o644); err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(*readyFile, []byte(reg.Host+"\n"), 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Printf("registry: %d images on %s\n", len(imgs), reg.Host)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "registry: "+format+"\n", args...)
	os.Exit(1)
}
