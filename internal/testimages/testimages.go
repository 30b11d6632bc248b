// Package testimages is the project's test fixture for images: it builds
// small OCI images from Debian's busybox-static (apt-get install
// busybox-static puts it at /bin/busybox) and serves them from a real
// registry (go-containerregistry's) on 127.0.0.1 that the test starts and
// stops itself, optionally behind basic auth, counting requests so tests can
// assert how often a manifest or blob was fetched.
//
//	reg := testimages.StartRegistry(t)                      // or StartRegistry(t, WithBasicAuth("u", "p"))
//	reg.Push(t, "busybox", testimages.Busybox(t), "1.35", "latest")
//	ref := reg.Ref("busybox:latest")                       // "127.0.0.1:PORT/busybox:latest"
//	conf := reg.RegistriesConf(t)                           // registries.conf marking it insecure (plain HTTP)
//
// Images, all deterministic (same bytes, same digests, every run):
//   - Busybox: one layer, /bin/busybox and applet symlinks, /etc/passwd and /etc/group for root.
//   - Distinct(t, tag): busybox plus /distinct holding tag, so each tag yields another image.
//   - WithUser: USER 1000 with /etc/passwd and /etc/group entries for it (app, supplementary group).
//   - Layered: 5 layers exercising whiteouts and an opaque directory (see its doc).
//   - Large(t, layers, size): layers of incompressible pseudo-random data, busybox in the first.
package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// Applets linked next to busybox in the images.
var Applets = []string{"sh", "ls", "cat", "echo", "sleep", "id", "env", "true", "false", "ps", "head", "tail",
	"wc", "mkdir", "rm", "touch", "date", "hostname", "grep", "sed", "test", "stat", "mount", "top", "dd", "printf", "yes", "kill", "pwd"}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// T is the part of testing.TB the helpers use, so that programs (the
// test registry command) can use them too.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

var _ T = (testing.TB)(nil)

// Registry is a registry served on 127.0.0.1 for one test.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	srv  *httptest.Server
	user string
	pass string

	middleware func(http.Handler) http.Handler

	mu       sync.Mutex
	requests map[string]int // "METHOD path" -> count
}

// Option configures StartRegistry.
type Option func(*Registry)

// WithBasicAuth requires these credentials for every request.
func WithBasicAuth(user, pass string) Option {
	return func(r *Registry) { r.user, r.pass = user, pass }
}

// WithMiddleware wraps the registry handler (after auth and counting), to
// slow or stall requests, for example.
func WithMiddleware(m func(http.Handler) http.Handler) Option {
	return func(r *Registry) { r.middleware = m }
}

// StartRegistry starts a registry; it stops when the test ends.
func StartRegistry(t T, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{requests: map[string]int{}}
	for _, o := range opts {
		o(r)
	}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if r.middleware != nil {
		inner = r.middleware(inner)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != r.user || p != r.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		r.mu.Lock()
		r.requests[req.Method+" "+req.URL.Path]++
		r.mu.Unlock()
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// ServeRegistry serves a registry on addr (a 127.0.0.1 address) until the
// returned server is closed; for programs that outlive a test.
func ServeRegistry(addr string, opts ...Option) (*Registry, *http.Server, error) {
	r := &Registry{requests: map[string]int{}}
	for _, o := range opts {
		o(r)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	r.Host = lis.Addr().String()
	return r, srv, nil
}

// Ref is "HOST/" + repoAndTag.
func (r *Registry) Ref(repoAndTag string) string { return r.Host + "/" + repoAndTag }

// Push uploads img under repo with each tag and returns its manifest digest.
func (r *Registry) Push(t T, repo string, img v1.Image, tags ...string) string {
	t.Helper()
	opts := []remote.Option{}
	if r.user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass}))
	}
	for _, tag := range tags {
		ref, err := name.ParseReference(r.Ref(repo+":"+tag), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// Requests returns how often "METHOD path" was served, for example
// Requests("GET", "/v2/busybox/manifests/latest").
func (r *Registry) Requests(method, path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[method+" "+path]
}

// BlobGets counts GETs of the blobs of repo (layer downloads).
func (r *Registry) BlobGets(repo string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.requests {
		if strings.HasPrefix(k, "GET /v2/"+repo+"/blobs/") {
			n += v
		}
	}
	return n
}

// ResetCounts forgets the request counts (after pushing, say).
func (r *Registry) ResetCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = map[string]int{}
}

// RegistriesConf writes a registries.conf in a temporary directory that
// marks this registry insecure (plain HTTP) and lets short names resolve to
// it, and returns its path.
func (r *Registry) RegistriesConf(t T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registries.conf")
	conf := fmt.Sprintf("unqualified-search-registries = [%q]\nshort-name-mode = \"disabled\"\n\n[[registry]]\nlocation = %q\ninsecure = true\n", r.Host, r.Host)
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// File is one entry of a layer.
type File struct {
	Name     string
	Mode     int64
	Type     byte // tar.TypeReg, TypeDir, TypeSymlink, TypeLink
	Linkname string
	Data     []byte
}

type file = File

// NewLayer builds a deterministic layer (fixed times, given order).
func NewLayer(t T, files []File) v1.Layer { return layer(t, files) }

// NewImage builds a linux/amd64 image from layers with the given config
// (PATH and Cmd /bin/sh by default), created at a fixed time.
func NewImage(t T, layers []v1.Layer, cfg v1.Config) v1.Image { return image(t, layers, cfg) }

// Dir, Reg, Symlink and Hardlink make layer entries.
func Dir(name string) File { return dir(name) }

// Reg is a regular file with mode 0644.
func Reg(name, content string) File { return reg(name, content) }

// Symlink is a symbolic link.
func Symlink(name, target string) File { return symlink(name, target) }

// Hardlink is a hard link to target (a path in the same or a lower layer).
func Hardlink(name, target string) File {
	return File{Name: name, Mode: 0o755, Type: tar.TypeLink, Linkname: target}
}

func layer(t T, files []file) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: f.Type, Linkname: f.Linkname, Size: int64(len(f.Data)), ModTime: epoch, Format: tar.FormatPAX}
		if f.Type != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if f.Type == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func dir(n string) file { return file{Name: n, Mode: 0o755, Type: tar.TypeDir} }
func reg(n, content string) file {
	return file{Name: n, Mode: 0o644, Type: tar.TypeReg, Data: []byte(content)}
}
func symlink(n, target string) file {
	return file{Name: n, Mode: 0o777, Type: tar.TypeSymlink, Linkname: target}
}

func busyboxFiles(t T) []file {
	t.Helper()
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatalf("busybox-static is needed (apt-get install -y busybox-static): %v", err)
	}
	files := []file{dir("bin/"), {Name: "bin/busybox", Mode: 0o755, Type: tar.TypeReg, Data: bin}}
	for _, a := range Applets {
		files = append(files, symlink("bin/"+a, "busybox"))
	}
	return append(files, dir("etc/"), reg("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		reg("etc/group", "root:x:0:\n"), dir("tmp/"), dir("root/"))
}

func image(t T, layers []v1.Layer, cfg v1.Config) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: epoch}
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	if cfg.Cmd == nil {
		cfg.Cmd = []string{"/bin/sh"}
	}
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Busybox is a one-layer busybox image.
func Busybox(t T) v1.Image {
	return image(t, []v1.Layer{layer(t, busyboxFiles(t))}, v1.Config{})
}

// Distinct is busybox plus a layer holding /distinct with content, so every
// content gives a distinct image ID.
func Distinct(t T, content string) v1.Image {
	return image(t, []v1.Layer{layer(t, busyboxFiles(t)), layer(t, []file{reg("distinct", content)})},
		v1.Config{Labels: map[string]string{"berth.test/distinct": content}})
}

// WithUser runs as USER 1000 ("app", primary group 1000, also in group
// 2000 "extra") with matching /etc/passwd and /etc/group.
func WithUser(t T) v1.Image {
	files := busyboxFiles(t)
	for i := range files {
		switch files[i].Name {
		case "etc/passwd":
			files[i].Data = []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
		case "etc/group":
			files[i].Data = []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
		}
	}
	files = append(files, dir("home/"), dir("home/app/"))
	return image(t, []v1.Layer{layer(t, files)}, v1.Config{User: "1000", WorkingDir: "/home/app"})
}

// Layered has five layers: busybox; /a/{x,y} and /d/{old1,old2}; a whiteout
// of /a/x; an opaque /d holding only /d/new; and /a/z. The merged root must
// show /a/y, /a/z and /d/new, and neither /a/x nor /d/old1 nor /d/old2.
func Layered(t T) v1.Image {
	return image(t, []v1.Layer{
		layer(t, busyboxFiles(t)),
		layer(t, []file{dir("a/"), reg("a/x", "x"), reg("a/y", "y"), dir("d/"), reg("d/old1", "1"), reg("d/old2", "2")}),
		layer(t, []file{dir("a/"), reg("a/.wh.x", "")}),
		layer(t, []file{dir("d/"), reg("d/.wh..wh..opq", ""), reg("d/new", "new")}),
		layer(t, []file{dir("a/"), reg("a/z", "z")}),
	}, v1.Config{})
}

// Large has n layers of size bytes each of incompressible, seeded
// pseudo-random data (deterministic); the first layer also holds busybox.
// Large(t, 10, 5<<20) is the 50 MB, 10-layer image of the pull benchmark.
func Large(t T, n, size int) v1.Image {
	rng := rand.New(rand.NewSource(42))
	var layers []v1.Layer
	for i := 0; i < n; i++ {
		data := make([]byte, size)
		rng.Read(data)
		files := []file{dir("data/"), {Name: fmt.Sprintf("data/blob%02d", i), Mode: 0o644, Type: tar.TypeReg, Data: data}}
		if i == 0 {
			files = append(busyboxFiles(t), files...)
		}
		layers = append(layers, layer(t, files))
	}
	return image(t, layers, v1.Config{})
}

// Paths lists a directory tree relative to root, for assertions.
func Paths(root string) ([]string, error) {
	var out []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out, err
}

// ProgramT lets the image helpers run in a program rather than a test: a
// failure prints the message, runs the cleanups and exits with status 1.
type ProgramT struct {
	Name     string
	cleanups []func()
}

// Helper implements T.
func (t *ProgramT) Helper() {}

// Fatal implements T.
func (t *ProgramT) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{t.Name + ":"}, args...)...)
	t.RunCleanups()
	os.Exit(1)
}

// Fatalf implements T.
func (t *ProgramT) Fatalf(format string, args ...any) { t.Fatal(fmt.Sprintf(format, args...)) }

// Cleanup implements T.
func (t *ProgramT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

// TempDir implements T; the directory is removed by RunCleanups.
func (t *ProgramT) TempDir() string {
	d, err := os.MkdirTemp("", t.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// RunCleanups runs the registered cleanups, last first.
func (t *ProgramT) RunCleanups() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
