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
	t := &fatalT{}
	defer t.cleanup()
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

// fatalT lets the test image helpers run in a program.
type fatalT struct{ cleanups []func() }

func (t *fatalT) Helper() {}
func (t *fatalT) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"registry:"}, args...)...)
	t.cleanup()
	os.Exit(1)
}
func (t *fatalT) Fatalf(format string, args ...any) { t.Fatal(fmt.Sprintf(format, args...)) }
func (t *fatalT) TempDir() string {
	d, err := os.MkdirTemp("", "berth-registry-")
	if err != nil {
		t.Fatal(err)
	}
	t.cleanups = append(t.cleanups, func() { os.RemoveAll(d) })
	return d
}
func (t *fatalT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *fatalT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
