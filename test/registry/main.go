// Command registry serves Berth's test images from a registry on 127.0.0.1,
// for trying Berth by hand (see README: Quick start) and for the conformance
// run. It pushes busybox (tags 1.35 and latest), user (USER 1000) and
// layered (whiteouts), built from Debian's busybox-static, and serves until
// interrupted.
//
//	go run ./test/registry -addr 127.0.0.1:5000
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/berth-cri/berth/internal/testimages"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "listen address (loopback only)")
	flag.Parse()
	t := &testimages.ProgramT{Name: "registry"}
	defer t.RunCleanups()
	reg, srv, err := testimages.ServeRegistry(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "registry: %v\n", err)
		os.Exit(1)
	}
	defer srv.Close()
	reg.Push(t, "busybox", testimages.Busybox(t), "1.35", "latest")
	reg.Push(t, "user", testimages.WithUser(t), "latest")
	reg.Push(t, "layered", testimages.Layered(t), "latest")
	fmt.Printf("serving %s/busybox:1.35 %s/busybox:latest %s/user:latest %s/layered:latest\n", reg.Host, reg.Host, reg.Host, reg.Host)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
