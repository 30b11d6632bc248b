package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth-cri/berth/internal/testimages"
)

// BenchmarkPull50MB pulls a 50 MB, 10-layer image (incompressible data)
// from a registry on 127.0.0.1 into a fresh overlay store, with Berth's
// image service and, in the same run, with `skopeo copy` into
// containers-storage (Debian's skopeo, same driver) for comparison.
//
//	go test -run '^$' -bench Pull50MB -benchtime 5x ./plugins/overlay/internal/images/
func BenchmarkPull50MB(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for overlay")
	}
	reg := testimages.StartRegistry(b)
	reg.Push(b, "big", testimages.Large(b, 10, 5<<20), "latest")
	ref := reg.Ref("big:latest")
	conf := reg.RegistriesConf(b)

	b.Run("berth", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dir := b.TempDir()
			svc, err := New(Options{Driver: "overlay", GraphRoot: filepath.Join(dir, "g"), RunRoot: filepath.Join(dir, "r"), RegistriesConf: conf})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := svc.Pull(context.Background(), ref, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := svc.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.SetBytes(50 << 20)
	})

	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		b.Log("skopeo not installed (apt-get install -y skopeo): no comparison")
		return
	}
	b.Run("skopeo", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dir := b.TempDir()
			dest := "containers-storage:[overlay@" + filepath.Join(dir, "g") + "+" + filepath.Join(dir, "r") + "]" + ref
			cmd := exec.Command(skopeo, "--registries-conf", conf, "copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, dest)
			b.StartTimer()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("skopeo copy: %v\n%s", err, out)
			}
			b.StopTimer()
			// skopeo leaves the store's self bind mount; release it as its
			// own next run would.
			cleanup := exec.Command("umount", filepath.Join(dir, "g", "overlay"))
			_ = cleanup.Run()
			b.StartTimer()
		}
		b.SetBytes(50 << 20)
	})
}

// BenchmarkRootfsCycle is a container's writable layer from create to
// remove (CreateRootfs, MountRootfs, UnmountRootfs, RemoveRootfs) on the
// overlay driver, the storage part of CreateContainer and RemovePodSandbox.
//
//	go test -run '^$' -bench RootfsCycle -benchtime 50x ./plugins/overlay/internal/images/
func BenchmarkRootfsCycle(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for overlay")
	}
	reg := testimages.StartRegistry(b)
	reg.Push(b, "busybox", testimages.Busybox(b), "latest")
	dir := b.TempDir()
	svc, err := New(Options{Driver: "overlay", GraphRoot: filepath.Join(dir, "g"), RunRoot: filepath.Join(dir, "r"), RegistriesConf: reg.RegistriesConf(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Close() })
	img, err := svc.Pull(context.Background(), reg.Ref("busybox:latest"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("%064x", i+1)
		if _, err := svc.CreateRootfs(id, img, "", false); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.MountRootfs(id); err != nil {
			b.Fatal(err)
		}
		if err := svc.UnmountRootfs(id); err != nil {
			b.Fatal(err)
		}
		if err := svc.RemoveRootfs(id); err != nil {
			b.Fatal(err)
		}
	}
}
