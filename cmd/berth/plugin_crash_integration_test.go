package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pluginPID is the PID of the named plugin's current process.
func pluginPID(t *testing.T, d *daemon, name string) int {
	t.Helper()
	for _, s := range d.plugins() {
		if s.Name == name && s.State == "running" {
			return s.PID
		}
	}
	t.Fatalf("plugin %s not running", name)
	return 0
}

// waitPluginBack waits until the named plugin runs in a process other than
// old.
func waitPluginBack(t *testing.T, d *daemon, name string, old int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range d.plugins() {
			if s.Name == name && s.PID != old && s.State == "running" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("plugin %s not back after kill -9", name)
}

// podInitsOf lists the pod inits whose PID namespace is pinned under dir.
func podInitsOf(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if !strings.Contains(string(b), "berth-pod-init") {
			continue
		}
		pid := filepath.Base(filepath.Dir(p))
		// A pod init of this daemon runs from its directory.
		if exe, _ := os.Readlink("/proc/" + pid + "/exe"); strings.HasPrefix(exe, dir) {
			out = append(out, pid)
		}
	}
	return out
}

// TestIntegrationPluginKilledDuringCreate kills (SIGKILL, for real) the
// runc plugin during RunPodSandbox and the runc, monitor and overlay plugins
// during CreateContainer, at delays swept across each call. Whatever the
// call answers, once the plugin is back: a failed call left nothing (no
// record, no pinned namespace, no pod init, no mount, no supervisor), a
// successful one left a working object, and everything can be removed.
func TestIntegrationPluginKilledDuringCreate(t *testing.T) {
	d, rc, image := podClients(t)
	ctx := context.Background()
	sandboxes := filepath.Join(d.runroot, "plugins", "run", "runc", "sandboxes")

	kill := func(name string, delay time.Duration, call func() error) error {
		pid := pluginPID(t, d, name)
		errc := make(chan error, 1)
		go func() { errc <- call() }()
		time.Sleep(delay)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		err := <-errc
		waitPluginBack(t, d, name, pid)
		return err
	}
	failed, succeeded := 0, 0
	for i := 0; i < 8; i++ {
		delay := time.Duration(i) * 2 * time.Millisecond
		pcfg := podConfig(d, fmt.Sprintf("crash-runp-%d", i))
		var id string
		err := kill("runc", delay, func() error {
			resp, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
			if err == nil {
				id = resp.PodSandboxId
			}
			return err
		})
		pods, lerr := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if lerr != nil {
			t.Fatal(lerr)
		}
		if err != nil {
			failed++
			if len(pods.Items) != 0 {
				t.Errorf("delay %v: RunPodSandbox failed (%v) but pods are listed: %v", delay, err, pods.Items)
			}
			if entries, _ := os.ReadDir(sandboxes); len(entries) != 0 {
				t.Errorf("delay %v: RunPodSandbox failed (%v) but the runc plugin kept %d sandbox dirs", delay, err, len(entries))
			}
			if inits := podInitsOf(d.dir); len(inits) != 0 {
				t.Errorf("delay %v: RunPodSandbox failed (%v) but pod inits run: %v", delay, err, inits)
			}
			continue
		}
		succeeded++
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("RunPodSandbox with the runc plugin killed at 0-14 ms: %d failed cleanly, %d succeeded", failed, succeeded)

	pcfg := podConfig(d, "crash-create")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"overlay", "runc", "monitor"} {
		failed, succeeded := 0, 0
		for i := 0; i < 6; i++ {
			delay := time.Duration(i) * 10 * time.Millisecond
			cfg := ctrConfig(fmt.Sprintf("%s-%d", name, i), image, "sleep 3600")
			var id string
			err := kill(name, delay, func() error {
				resp, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg, Config: cfg})
				if err == nil {
					id = resp.ContainerId
				}
				return err
			})
			cs, lerr := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if err != nil {
				failed++
				if len(cs.Containers) != 0 {
					t.Errorf("%s killed at %v: CreateContainer failed (%v) but containers are listed: %v", name, delay, err, cs.Containers)
				}
				if n := rootfsMounts(d.root); n != 0 {
					t.Errorf("%s killed at %v: CreateContainer failed (%v) but %d overlay mounts remain", name, delay, err, n)
				}
				continue
			}
			succeeded++
			// A container that was created works.
			if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Errorf("%s killed at %v: start of the created container: %v", name, delay, err)
			}
			if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("CreateContainer with the %s plugin killed at 0-50 ms: %d failed cleanly, %d succeeded", name, failed, succeeded)
	}
	if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if inits := podInitsOf(d.dir); len(inits) != 0 {
		t.Errorf("pod inits left: %v", inits)
	}
	if entries, _ := os.ReadDir(sandboxes); len(entries) != 0 {
		t.Errorf("sandbox dirs left: %d", len(entries))
	}
	// No supervisor of this daemon is left.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "berth-conmon") {
			// The monitor's spare supervisor (berth-spare) is not a leak.
			if comm, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "comm")); strings.TrimSpace(string(comm)) == "berth-spare" {
				continue
			}
			if exe, _ := os.Readlink(filepath.Join(filepath.Dir(p), "exe")); strings.HasPrefix(exe, d.dir) {
				t.Errorf("supervisor %s left", filepath.Base(filepath.Dir(p)))
			}
		}
	}
}

// rootfsMounts counts the containers' root filesystems mounted below dir
// (the store's own bind mount of itself is not one).
func rootfsMounts(dir string) int {
	b, _ := os.ReadFile("/proc/self/mounts")
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir) && strings.HasSuffix(f[1], "/merged") {
			n++
		}
	}
	return n
}
