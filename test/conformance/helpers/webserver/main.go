// Command webserver is the conformance images' stand-in for nginx and
// httpd: an HTTP server answering every path with a small page.
//
// Run as nginx it writes /var/run/nginx.pid and rewrites its command line to
// "nginx: master process ..." (what the upstream image shows in
// /proc/1/cmdline); run as httpd it logs a line mentioning httpd and exits on
// SIGWINCH, the upstream image's stop signal.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

func main() {
	// Only -port is ours; nginx-style arguments (-g 'daemon off;') are ignored.
	port := new(int)
	*port = 80
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "-port="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				*port = n
			}
		}
	}
	name := filepath.Base(os.Args[0])
	sigs := []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT}
	switch name {
	case "nginx":
		_ = os.MkdirAll("/var/run", 0o755)
		_ = os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
		setProcTitle("nginx: master process")
	case "httpd":
		sigs = append(sigs, syscall.SIGWINCH)
		fmt.Printf("httpd: AH00094: Command line: 'httpd -D FOREGROUND' (stand-in), listening on :%d\n", *port)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, sigs...)
	go func() {
		<-stop
		os.Exit(0)
	}()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n")
	})
	if err := http.ListenAndServe(fmt.Sprintf(":%d", *port), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// setProcTitle overwrites the process's argument area, which is what
// /proc/self/cmdline shows. Go's os.Args strings point into that area; the
// title is truncated to fit the original arguments.
func setProcTitle(title string) {
	if len(os.Args) == 0 {
		return
	}
	first := unsafe.StringData(os.Args[0])
	last := os.Args[len(os.Args)-1]
	end := uintptr(unsafe.Pointer(unsafe.StringData(last))) + uintptr(len(last))
	size := int(end - uintptr(unsafe.Pointer(first)))
	if size <= 0 {
		return
	}
	area := unsafe.Slice(first, size)
	n := copy(area, title)
	for i := n; i < size; i++ {
		area[i] = 0
	}
}
