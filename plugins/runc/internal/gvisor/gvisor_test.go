package gvisor

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func writeSpec(t *testing.T, spec specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readSpec(t *testing.T, dir string) specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPrepareBundle(t *testing.T) {
	const key = "/run/berth/plugins/run/runc/sandboxes/sb/pid"
	base := func(pid specs.LinuxNamespace) specs.Spec {
		return specs.Spec{Hostname: "web", Annotations: map[string]string{"a": "b", AnnotationContainerType: "container"},
			Process: &specs.Process{Args: []string{"sh"}},
			Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/x/net"}, {Type: specs.IPCNamespace, Path: "/x/ipc"}, pid}}}
	}
	for _, tc := range []struct {
		name    string
		pid     *specs.LinuxNamespace
		key     string
		wantErr error
	}{
		{"pod PID namespace", &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: key}, key, nil},
		{"own PID namespace", &specs.LinuxNamespace{Type: specs.PIDNamespace}, "", nil},
		{"node PID namespace", nil, key, ErrHostPID},
		{"target container", &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}, key, ErrTargetPID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base(specs.LinuxNamespace{Type: specs.UTSNamespace})
			if tc.pid != nil {
				s = base(*tc.pid)
			}
			dir := writeSpec(t, s)
			err := PrepareBundle(dir, "sb", tc.key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("PrepareBundle = %v, want %v", err, tc.wantErr)
			}
			got := readSpec(t, dir)
			if tc.wantErr != nil {
				if _, ok := got.Annotations[AnnotationSandboxID]; ok {
					t.Errorf("a refused bundle was changed: %v", got.Annotations)
				}
				return
			}
			want := map[string]string{"a": "b", AnnotationContainerType: ContainerTypeContainer, AnnotationSandboxID: "sb"}
			if !reflect.DeepEqual(got.Annotations, want) || got.Hostname != "web" || got.Process.Args[0] != "sh" {
				t.Errorf("prepared spec: annotations %v, hostname %q", got.Annotations, got.Hostname)
			}
		})
	}
	// Host IPC; and a host-network container (no hostname in its spec)
	// keeps the node's name.
	s := base(specs.LinuxNamespace{Type: specs.PIDNamespace})
	s.Linux.Namespaces = s.Linux.Namespaces[:1]
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	if err := PrepareBundle(writeSpec(t, s), "sb", ""); !errors.Is(err, ErrHostIPC) {
		t.Errorf("host IPC: %v", err)
	}
	s = base(specs.LinuxNamespace{Type: specs.PIDNamespace})
	s.Hostname = ""
	dir := writeSpec(t, s)
	if err := PrepareBundle(dir, "sb", ""); err != nil {
		t.Fatal(err)
	}
	if node, _ := os.Hostname(); readSpec(t, dir).Hostname != node {
		t.Errorf("hostname %q, want the node's %q", readSpec(t, dir).Hostname, node)
	}
}

func TestWriteRootBundle(t *testing.T) {
	dir := t.TempDir()
	r := Root{ID: "sb", Hostname: "web", NetNS: "/x/net", PIDKey: "/x/pid", CgroupsPath: "/berth/pod-sb/sb", Init: "/usr/libexec/berth/berth-runc"}
	if err := WriteRootBundle(dir, r); err != nil {
		t.Fatal(err)
	}
	s := readSpec(t, dir)
	if !s.Root.Readonly || s.Hostname != "web" || s.Linux.CgroupsPath != r.CgroupsPath ||
		s.Annotations[AnnotationContainerType] != ContainerTypeSandbox || s.Annotations[AnnotationSandboxID] != "sb" {
		t.Errorf("root spec: %+v", s)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{initPath, "berth-pod-init"}) {
		t.Errorf("root process %v", s.Process.Args)
	}
	ns := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		ns[n.Type] = n.Path
	}
	if ns[specs.NetworkNamespace] != "/x/net" || ns[specs.PIDNamespace] != "/x/pid" {
		t.Errorf("namespaces %v", s.Linux.Namespaces)
	}
	var initMount *specs.Mount
	for i, m := range s.Mounts {
		if m.Destination == initPath {
			initMount = &s.Mounts[i]
		}
	}
	if initMount == nil || initMount.Source != r.Init || !strings.Contains(strings.Join(initMount.Options, ","), "ro") {
		t.Errorf("init mount %+v", initMount)
	}
	// Mount points exist in the read-only root.
	for _, p := range []string{"rootfs/proc", "rootfs/dev", "rootfs" + initPath} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
}

func TestCgroupsPath(t *testing.T) {
	if p, err := CgroupsPath("/kubepods/pod1", "abc"); err != nil || p != "/kubepods/pod1/abc" {
		t.Errorf("cgroupfs: %q %v", p, err)
	}
	if p, err := CgroupsPath("", "0123456789abcdef"); err != nil || p != "/berth/pod-0123456789ab/0123456789abcdef" {
		t.Errorf("default: %q %v", p, err)
	}
	if _, err := CgroupsPath("kubepods-pod1.slice", "abc"); !errors.Is(err, ErrSystemdCgroup) {
		t.Errorf("systemd slice: %v", err)
	}
}

func TestParsePS(t *testing.T) {
	table := `UID       PID       PPID      C         TTY       STIME     TIME      CMD
0         6         0         0         ?         12:20     0s        sleep
0         8         0         0         ?         12:20     0s        sh
0         9         8         0         ?         12:20     0s        sleep
0         10        9         0         ?         12:20     0s        sh
`
	got := parsePS(table)
	want := map[int][]int{0: {6, 8}, 8: {9}, 9: {10}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsePS = %v, want %v", got, want)
	}
	if got := parsePS("no table"); len(got) != 0 {
		t.Errorf("garbage: %v", got)
	}
}

func TestArgv(t *testing.T) {
	r := Runsc{Binary: "/usr/bin/runsc", Root: "/run/x", Args: []string{"--network=host"}}
	want := []string{"/usr/bin/runsc", "--root", "/run/x", "--network=host", "start", "c1"}
	if got := r.Argv("start", "c1"); !reflect.DeepEqual(got, want) {
		t.Errorf("Argv = %v", got)
	}
	argv, err := CreateArgv("/bin/self", Keeper{Runsc: r, ID: "c1", Bundle: "/b", Socket: "/s", PIDFile: "/p"})
	if err != nil || len(argv) != 3 || argv[1] != CreateArg {
		t.Fatalf("CreateArgv = %v, %v", argv, err)
	}
	var k Keeper
	if err := json.Unmarshal([]byte(argv[2]), &k); err != nil || k.ID != "c1" || k.Runsc.Args[0] != "--network=host" {
		t.Errorf("create command options %s: %v", argv[2], err)
	}
}

// A socket path longer than sockaddr_un allows is reached through its
// directory's descriptor.
func TestRequestLongSocketPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := Socket(dir, "container-1")
	if len(sock) < 108 {
		t.Fatalf("socket path %q is not long", sock)
	}
	if _, err := Request(context.Background(), sock, "start"); !errors.Is(err, ErrNoKeeper) {
		t.Errorf("no listener: %v, want ErrNoKeeper", err)
	}
	addr, done, err := sockAddr(sock)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", addr)
	done()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Write([]byte("got " + string(buf[:n])))
		c.Close()
	}()
	if reply, err := Request(context.Background(), sock, "start"); err != nil || reply != "got start" {
		t.Errorf("Request = %q, %v", reply, err)
	}
}
