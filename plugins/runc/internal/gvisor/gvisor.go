// Package gvisor runs a Berth pod as one gVisor (runsc) sandbox.
//
// gVisor runs every container of a pod in one sandbox (one runsc-sandbox
// process, the Sentry), whose first container is its root: when the root
// container's process exits, the whole sandbox and every container in it
// stop. Kubelet creates a pod's containers one by one and restarts them, so
// no application container can be the root. Berth's pod gets a root
// container of its own instead of a pause image: the pod init of the runc
// plugin (berth-pod-init, a static reaper, bind-mounted read-only into an
// otherwise empty read-only root), created and started when the pod is.
// Application containers join it with the CRI annotations runsc reads
// (io.kubernetes.cri.container-type = container,
// io.kubernetes.cri.sandbox-id = the root container's ID, which is the pod
// sandbox's ID).
//
// Two things differ from runc and are handled by a small keeper process per
// container (see keeper.go): runsc hands a joining container the standard
// streams of `runsc start`, not of `runsc create`, and the PID runsc writes
// for any container is the sandbox's, which is no child of the container's
// supervisor. The keeper holds the supervisor's streams from create to
// start, runs `runsc start` with them when asked, then waits for the
// container with `runsc wait` and exits with its exit status, so the
// supervisor records exit codes and logs as it does for runc.
package gvisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/plugins/runc/internal/sandbox"
)

// The CRI annotations runsc reads to place a container in a sandbox
// (containerd's names; runsc also reads CRI-O's).
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	ContainerTypeSandbox    = "sandbox"
	ContainerTypeContainer  = "container"
)

// BundleDir is the root container's bundle inside a pod's sandbox
// directory; its presence marks a gVisor pod.
const BundleDir = "gvisor"

// initPath is where the pod init binary is mounted in the root container.
const initPath = "/berth-pod-init"

// Errors for pods and containers gVisor cannot run. The plugin answers them
// with codes.Unimplemented.
var (
	ErrHostIPC = errors.New("the node's IPC namespace cannot be shared with a gVisor sandbox (gVisor implements IPC itself)")
	ErrHostPID = errors.New("the node's PID namespace cannot be shared with a gVisor sandbox (gVisor implements processes itself)")
	// ErrTargetPID: a container's PID namespace can be the pod's or its
	// own; joining another container's needs that container's gVisor
	// namespace, which Berth does not track.
	ErrTargetPID = errors.New("joining another container's PID namespace (NamespaceMode_TARGET) is not supported by the gVisor runtime handler")
	// ErrSystemdCgroup: runsc 0.0~20221219 has no systemd cgroup manager.
	ErrSystemdCgroup = errors.New("runsc cannot place the sandbox in a systemd slice (no systemd cgroup support); use cgroup_driver = \"cgroupfs\"")
)

// Root describes a pod's root container.
type Root struct {
	// ID is the root container's runsc ID: the pod sandbox's ID.
	ID       string
	Hostname string
	// NetNS is the pinned network namespace the sandbox joins ("" runs it
	// in the plugin's, the node's, network namespace).
	NetNS string
	// PIDKey, when set, is the PID namespace "path" the pod's containers
	// share with the root container. runsc never opens it: it matches
	// containers' PID namespace paths as strings, and containers with the
	// root's path share the root's PID namespace, whose PID 1 is the pod
	// init (it reaps their orphans).
	PIDKey      string
	CgroupsPath string
	// Init is the host path of the pod init binary (static).
	Init string
}

// WriteRootBundle writes the root container's bundle in dir: config.json
// and a read-only root with nothing but mount points.
func WriteRootBundle(dir string, r Root) error {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(rootfs, initPath), os.O_CREATE|os.O_RDONLY, 0o555)
	if err != nil {
		return err
	}
	f.Close()
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: r.PIDKey}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}}
	if r.NetNS != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: r.NetNS})
	}
	spec := specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: r.Hostname,
		Process: &specs.Process{
			Args:            []string{initPath, sandbox.InitArg},
			Cwd:             "/",
			Env:             []string{},
			Capabilities:    &specs.LinuxCapabilities{Bounding: []string{}, Effective: []string{}, Permitted: []string{}, Inheritable: []string{}, Ambient: []string{}},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "mode=755", "size=64k"}},
			{Destination: initPath, Type: "bind", Source: r.Init, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		},
		Annotations: map[string]string{AnnotationContainerType: ContainerTypeSandbox, AnnotationSandboxID: r.ID},
		Linux:       &specs.Linux{Namespaces: ns, CgroupsPath: r.CgroupsPath},
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "config.json"), b, 0o600)
}

// PrepareBundle readies a container's bundle, written by the host, for the
// pod's sandbox: it adds the annotations that make runsc join the sandbox
// whose root is sandboxID, gives the container a hostname (gVisor takes it
// from the spec only, never from a UTS namespace), and refuses what gVisor
// cannot do. pidKey is the pod's shared PID namespace key ("" when the
// pod's containers have PID namespaces of their own).
func PrepareBundle(bundle, sandboxID, pidKey string) error {
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	var hasPID, hasIPC bool
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.PIDNamespace:
			hasPID = true
			if ns.Path != "" && ns.Path != pidKey {
				return ErrTargetPID
			}
		case specs.IPCNamespace:
			hasIPC = true
		}
	}
	if !hasPID {
		return ErrHostPID
	}
	if !hasIPC {
		return ErrHostIPC
	}
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[AnnotationContainerType] = ContainerTypeContainer
	spec.Annotations[AnnotationSandboxID] = sandboxID
	if spec.Hostname == "" {
		// A pod on the node's network keeps the node's name.
		spec.Hostname, _ = os.Hostname()
	}
	out, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	return writeFileAtomic(path, out, mode)
}

// CgroupsPath is the root container's cgroup under the pod's cgroup parent
// (cgroupfs). runsc puts the sandbox and every gofer of the pod there.
func CgroupsPath(parent, id string) (string, error) {
	if parent == "" {
		// A host that does not say: the host's default pod parent.
		parent = "/berth/pod-" + id[:min(12, len(id))]
	}
	if !strings.HasPrefix(parent, "/") {
		return "", ErrSystemdCgroup
	}
	return filepath.Join(parent, id), nil
}

// writeFileAtomic writes path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// RemoveCgroup removes a container's cgroupfs directory in every
// hierarchy. runsc creates one per container but moves every process of
// the pod into the first (the root container's), and leaves some behind
// on delete; they are empty once the sandbox and its gofers are gone, which
// can take a moment after the sandbox was killed, so EBUSY is retried
// until the deadline.
func RemoveCgroup(path string, deadline time.Time) error {
	if path == "" || !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		return nil
	}
	dirs := []string{filepath.Join("/sys/fs/cgroup", path)}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), path))
		}
	}
	var errs []error
	for _, d := range dirs {
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// RemoveChildCgroups removes the (empty) cgroups under a pod's cgroup
// parent in every hierarchy: what runsc left of the pod's containers.
func RemoveChildCgroups(parent string, deadline time.Time) error {
	if parent == "" || parent == "/" || !strings.HasPrefix(parent, "/") || strings.Contains(parent, "..") {
		return nil
	}
	seen := map[string]bool{}
	var errs []error
	roots := []string{"/sys/fs/cgroup"}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	for _, r := range roots {
		children, _ := os.ReadDir(filepath.Join(r, parent))
		for _, c := range children {
			if c.IsDir() && !seen[c.Name()] {
				seen[c.Name()] = true
				errs = append(errs, RemoveCgroup(filepath.Join(parent, c.Name()), deadline))
			}
		}
	}
	return errors.Join(errs...)
}

// CgroupExists reports whether a cgroupfs path exists in any hierarchy.
func CgroupExists(path string) bool {
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", path, "cgroup.procs")); err == nil {
		return true
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", e.Name(), path)); err == nil && e.IsDir() {
			return true
		}
	}
	return false
}
