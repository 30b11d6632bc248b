// Package images builds the look-alikes of the images critest (cri-tools
// v1.37.0) pulls, deterministically, so `make conformance` can serve them
// from a registry on 127.0.0.1. What each must contain is described in
// ../../../README.md (Conformance) and comes from cri-tools' images/*/Dockerfile
// and from what the specs check.
package images

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	ti "github.com/berth-cri/berth/internal/testimages"
)

// Inputs are the binaries the images are made of.
type Inputs struct {
	// Busybox is Debian's dynamically linked busybox (from the busybox
	// package, extracted, not installed): the static build runs applets
	// without a PATH lookup, which defeats the masked-paths spec.
	Busybox string
	// Libs are the shared libraries Busybox needs, by absolute path.
	Libs []string
	// Pause, Webserver and NNP are the static helper programs in ../helpers.
	Pause, Webserver, NNP string
}

const (
	passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`
	pgrep = `#!/bin/sh
# pgrep stand-in (Debian's busybox has none): PIDs of processes whose name contains $1.
found=1
for d in /proc/[0-9]*; do
  read -r comm < "$d/comm" 2>/dev/null || continue
  case "$comm" in *"$1"*) echo "${d#/proc/}"; found=0;; esac
done
exit $found
`
	ipcs = `#!/bin/sh
# ipcs -m stand-in (Debian's busybox has none): shared memory segments from /proc/sysvipc/shm.
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
  printf '0x%08x %-10s %-10s %-10s %-10s %-10s\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
`
)

func readFile(t ti.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("conformance images: %v", err)
	}
	return b
}

func exe(name string, data []byte, mode int64) ti.File {
	return ti.File{Name: name, Mode: mode, Type: tar.TypeReg, Data: data}
}

// applets lists the busybox binary's applets.
func applets(t ti.T, busybox string) []string {
	t.Helper()
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", busybox, err)
	}
	list := strings.Fields(string(out))
	sort.Strings(list)
	return list
}

// busyboxLayer is the base of every image: busybox with each applet a hard
// link in /bin, its libraries, the official busybox image's passwd/group,
// and pgrep/ipcs stand-ins.
func busyboxLayer(t ti.T, in Inputs) v1.Layer {
	files := []ti.File{ti.Dir("bin/"), exe("bin/busybox", readFile(t, in.Busybox), 0o755)}
	for _, a := range applets(t, in.Busybox) {
		if a == "busybox" {
			continue
		}
		files = append(files, ti.Hardlink("bin/"+a, "bin/busybox"))
	}
	files = append(files, exe("bin/pgrep", []byte(pgrep), 0o755), exe("bin/ipcs", []byte(ipcs), 0o755))
	dirs := map[string]bool{}
	for _, lib := range in.Libs {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			t.Fatalf("library %s: %v", lib, err)
		}
		rel := strings.TrimPrefix(lib, "/")
		for d := filepath.Dir(rel); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
		files = append(files, exe(rel, readFile(t, real), 0o755))
	}
	var dl []string
	for d := range dirs {
		dl = append(dl, d)
	}
	sort.Strings(dl)
	for _, d := range dl {
		files = append([]ti.File{ti.Dir(d + "/")}, files...)
	}
	files = append(files, ti.Dir("etc/"), ti.Reg("etc/passwd", passwd), ti.Reg("etc/group", group),
		ti.Dir("tmp/"), ti.Dir("root/"), ti.Dir("home/"), ti.Dir("var/"), ti.Dir("var/www/"), ti.Dir("usr/"), ti.Dir("usr/sbin/"))
	return ti.NewLayer(t, files)
}

// Build returns every image critest pulls, by its public name.
func Build(t ti.T, in Inputs) map[string]v1.Image {
	base := busyboxLayer(t, in)
	busybox := func(cfg v1.Config, extra ...ti.File) v1.Image {
		layers := []v1.Layer{base}
		if len(extra) > 0 {
			layers = append(layers, ti.NewLayer(t, extra))
		}
		return ti.NewImage(t, layers, cfg)
	}
	pause := ti.NewImage(t, []v1.Layer{ti.NewLayer(t, []ti.File{exe("pause", readFile(t, in.Pause), 0o755)})},
		v1.Config{Entrypoint: []string{"/pause"}, Cmd: []string{}, User: "65535:65535"})
	web := readFile(t, in.Webserver)
	nginx := busybox(v1.Config{
		Entrypoint: []string{"/usr/sbin/nginx"}, Cmd: []string{"-g", "daemon off;"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: "SIGQUIT",
	}, ti.Dir("usr/"), ti.Dir("usr/sbin/"), exe("usr/sbin/nginx", web, 0o755), ti.Dir("var/run/"))
	hostnet := busybox(v1.Config{
		Entrypoint: []string{"/usr/sbin/nginx", "-port=12003"}, Cmd: []string{"-g", "daemon off;"}, StopSignal: "SIGQUIT",
	}, ti.Dir("usr/"), ti.Dir("usr/sbin/"), exe("usr/sbin/nginx", web, 0o755), ti.Dir("var/run/"))
	httpd := busybox(v1.Config{
		Cmd: []string{"httpd-foreground"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: "SIGWINCH",
		Env: []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HTTPD_PREFIX=/usr/local/apache2"},
	}, ti.Dir("usr/"), ti.Dir("usr/local/"), ti.Dir("usr/local/apache2/"), ti.Dir("usr/local/apache2/bin/"),
		exe("usr/local/apache2/bin/httpd", web, 0o755),
		exe("usr/local/apache2/bin/httpd-foreground", []byte("#!/bin/sh\nexec /usr/local/apache2/bin/httpd \"$@\"\n"), 0o755))
	nnp := busybox(v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}, Cmd: []string{}}, ti.Dir("usr/"), ti.Dir("usr/local/"), ti.Dir("usr/local/bin/"),
		ti.File{Name: "usr/local/bin/nnp", Mode: 0o4755, Type: tar.TypeReg, Data: readFile(t, in.NNP)})

	const k8s = "registry.k8s.io/e2e-test-images/"
	const staging = "gcr.io/k8s-staging-cri-tools/"
	out := map[string]v1.Image{
		"registry.k8s.io/pause:3.9":            pause,
		"k8s.gcr.io/pause:3.9":                 pause,
		"registry.k8s.io/pause:latest":         pause,
		k8s + "busybox:1.29-2":                 busybox(v1.Config{}),
		k8s + "busybox:1.29-4":                 busybox(v1.Config{}),
		"registry.k8s.io/busybox:latest":       busybox(v1.Config{}),
		k8s + "nginx:1.14-2":                   nginx,
		k8s + "nginx:1.14-4":                   nginx,
		staging + "hostnet-nginx-amd64:latest": hostnet,
		k8s + "httpd:2.4.39-4":                 httpd,
		k8s + "httpd:2.4.38-4":                 httpd,
		k8s + "nonewprivs:1.3":                 nnp,
	}
	marker := func(name string) v1.Image { return busybox(v1.Config{}, ti.Reg(name, "")) }
	out[staging+"test-image-latest:latest"] = marker("test-image-latest")
	tagged := marker("test-image-tag")
	out[staging+"test-image-tag:test"] = tagged
	out[staging+"test-image-tag:all"] = tagged
	tags := marker("test-image-tags")
	for _, tag := range []string{"1", "2", "3"} {
		out[staging+"test-image-tags:"+tag] = tags
	}
	for _, n := range []string{"1", "2", "3"} {
		out[staging+"test-image-"+n+":latest"] = marker("test-image-" + n)
	}
	out[staging+"test-image-digest:latest"] = marker("test-image-digest")
	for name, user := range map[string]string{
		"test-image-user-uid": "1002", "test-image-user-username": "www-data",
		"test-image-user-uid-group": "1003:1004", "test-image-user-username-group": "www-data:1004",
	} {
		out[staging+name+":latest"] = busybox(v1.Config{User: user}, ti.Reg(name, ""))
	}
	out[staging+"test-image-predefined-group:latest"] = busybox(v1.Config{User: "1000"},
		ti.Dir("etc/"),
		ti.Reg("etc/passwd", passwd+"default-user:x:1000:1000:Default user:/home/default-user:/bin/sh\n"),
		ti.Reg("etc/group", group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
		ti.Dir("home/"), ti.Dir("home/default-user/"))
	return out
}

// Names lists the images in a stable order.
func Names(imgs map[string]v1.Image) []string {
	names := make([]string, 0, len(imgs))
	for n := range imgs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Split divides "host/repo:tag" into host and "repo:tag".
func Split(name string) (string, string) {
	host, rest, _ := strings.Cut(name, "/")
	return host, rest
}
