package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/plugins"
	"github.com/berth-cri/berth/internal/testimages"
)

// configWithOverlay writes a copy of the repo's plugins.toml whose overlay
// plugin uses extra settings (one `key = value` per line).
func configWithOverlay(t *testing.T, extra ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../plugins.toml")
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "[plugins.overlay.config]\n"
	s := string(b)
	if !strings.Contains(s, anchor) {
		t.Fatalf("plugins.toml has no %q", anchor)
	}
	s = strings.Replace(s, anchor, anchor+strings.Join(extra, "\n")+"\n", 1)
	p := filepath.Join(t.TempDir(), "plugins.toml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mounts)")
	}
}

// assertNoMounts fails when anything is still mounted under dir.
func assertNoMounts(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, dir) {
			t.Errorf("mount left behind: %s", l)
		}
	}
}

func imageClient(t *testing.T, d *daemon) runtimeapi.ImageServiceClient {
	t.Helper()
	conn, err := grpcConn(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewImageServiceClient(conn)
}

func TestIntegrationImageService(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	digest := reg.Push(t, "busybox", testimages.Busybox(t), "1.35", "latest")
	reg.Push(t, "user", testimages.WithUser(t), "latest")
	d := startDaemonWith(t, configWithOverlay(t, `registries_conf = "`+reg.RegistriesConf(t)+`"`))
	t.Cleanup(func() { d.stop(); assertNoMounts(t, d.dir) })
	ic := imageClient(t, d)
	ctx := context.Background()
	spec := func(s string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: s} }

	pulled, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(reg.Ref("busybox:1.35"))})
	if err != nil {
		t.Fatal(err)
	}
	id := pulled.ImageRef
	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(reg.Ref("busybox@" + digest))}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(reg.Ref("user:latest"))}); err != nil {
		t.Fatal(err)
	}
	st, err := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(id), Verbose: true})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus: %v %v", st, err)
	}
	if st.Image.Id != id || len(st.Image.RepoTags) != 1 || st.Image.RepoTags[0] != reg.Ref("busybox:1.35") ||
		len(st.Image.RepoDigests) != 1 || st.Image.RepoDigests[0] != reg.Ref("busybox@"+digest) || st.Image.Size == 0 {
		t.Errorf("ImageStatus image = %+v", st.Image)
	}
	var info struct {
		ImageSpec struct {
			Config struct {
				Cmd []string `json:"Cmd"`
			} `json:"config"`
		} `json:"imageSpec"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || len(info.ImageSpec.Config.Cmd) == 0 {
		t.Errorf("verbose info %q: %v", st.Info["info"], err)
	}
	us, err := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(reg.Ref("user:latest"))})
	if err != nil || us.Image.GetUid().GetValue() != 1000 || us.Image.Username != "" {
		t.Errorf("user image: %+v %v", us.GetImage(), err)
	}
	absent, err := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(reg.Ref("busybox:absent"))})
	if err != nil || absent.Image != nil {
		t.Errorf("absent image: %v %v", absent, err)
	}
	list, err := ic.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 2 {
		t.Fatalf("ListImages = %v, %v", list, err)
	}
	list, err = ic.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: spec(reg.Ref("user:latest"))}})
	if err != nil || len(list.Images) != 1 || list.Images[0].Id == id {
		t.Fatalf("ListImages(filter) = %v, %v", list, err)
	}
	stream, err := ic.StreamImages(ctx, &runtimeapi.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			break
		}
		n += len(resp.Images)
	}
	if n != 2 {
		t.Errorf("StreamImages sent %d images", n)
	}
	fs, err := ic.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].UsedBytes.GetValue() == 0 ||
		!strings.HasPrefix(fs.ImageFilesystems[0].FsId.GetMountpoint(), d.root) || len(fs.ContainerFilesystems) != 1 {
		t.Errorf("ImageFsInfo = %v, %v", fs, err)
	}

	// Bad references are InvalidArgument naming the field, for every RPC.
	long := reg.Host + "/" + strings.Repeat("a", 300) + ":latest"
	for _, ref := range []string{"", reg.Ref("BusyBox:latest"), long, "a@sha256:xyz", " busybox"} {
		_, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(ref)})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "image.image") {
			t.Errorf("PullImage(%q): %v, want InvalidArgument naming image.image", ref, err)
		}
		if _, err := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(ref)}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ImageStatus(%q): %v", ref, err)
		}
		if _, err := ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(ref)}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("RemoveImage(%q): %v", ref, err)
		}
	}
	missing := reg.Ref("busybox:missing")
	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(missing)}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), missing) {
		t.Errorf("pull of a missing image: %v, want NotFound naming %s", err, missing)
	}

	// Remove one tag of two, then by ID, then again (idempotent).
	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(reg.Ref("busybox:latest"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(reg.Ref("busybox:1.35"))}); err != nil {
		t.Fatal(err)
	}
	st, _ = ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(id)})
	if st.GetImage() == nil || strings.Join(st.Image.RepoTags, ",") != reg.Ref("busybox:latest") {
		t.Errorf("after removing one tag: %+v", st.GetImage())
	}
	for i := 0; i < 2; i++ {
		if _, err := ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(id)}); err != nil {
			t.Fatalf("RemoveImage by ID (%d): %v", i, err)
		}
	}
	if st, _ := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(id)}); st.GetImage() != nil {
		t.Errorf("image still there: %+v", st.Image)
	}
}

func TestIntegrationImageAuth(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t, testimages.WithBasicAuth("berth", "s3cret"))
	reg.Push(t, "private", testimages.Busybox(t), "latest")
	d := startDaemonWith(t, configWithOverlay(t, `registries_conf = "`+reg.RegistriesConf(t)+`"`))
	t.Cleanup(func() { d.stop(); assertNoMounts(t, d.dir) })
	ic := imageClient(t, d)
	req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("private:latest")}}
	if _, err := ic.PullImage(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("pull without credentials: %v, want Unauthenticated", err)
	}
	req.Auth = &runtimeapi.AuthConfig{Username: "berth", Password: "s3cret"}
	if _, err := ic.PullImage(context.Background(), req); err != nil {
		t.Errorf("pull with credentials: %v", err)
	}
}

// TestIntegrationPluginKilledDuringPull: kill -9 of the overlay plugin in the
// middle of a pull leaves no half image, and the next pull succeeds.
func TestIntegrationPluginKilledDuringPull(t *testing.T) {
	needRoot(t)
	var blobGets atomic.Int32
	reg := testimages.StartRegistry(t, testimages.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				blobGets.Add(1)
				time.Sleep(300 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	}))
	reg.Push(t, "big", testimages.Large(t, 6, 2<<20), "latest")
	d := startDaemonWith(t, configWithOverlay(t, `registries_conf = "`+reg.RegistriesConf(t)+`"`))
	t.Cleanup(func() { d.stop(); assertNoMounts(t, d.dir) })
	ic := imageClient(t, d)
	var overlay plugins.Snapshot
	for _, s := range d.plugins() {
		if s.Name == "overlay" {
			overlay = s
		}
	}
	req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("big:latest")}}
	done := make(chan error, 1)
	go func() {
		_, err := ic.PullImage(context.Background(), req)
		done <- err
	}()
	for blobGets.Load() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(overlay.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-done; status.Code(err) != codes.Unavailable {
		t.Errorf("pull interrupted by the plugin's death: %v, want Unavailable", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := ic.ListImages(context.Background(), &runtimeapi.ListImagesRequest{})
		if err == nil {
			if len(list.Images) != 0 {
				t.Fatalf("half-pulled image listed: %+v", list.Images)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage plugin not back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := ic.PullImage(context.Background(), req); err != nil {
		t.Fatalf("pull after the interruption: %v", err)
	}
	list, err := ic.ListImages(context.Background(), &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 1 {
		t.Fatalf("after the second pull: %v %v", list, err)
	}
}

// TestIntegrationCrictlImages runs crictl's image commands, unmodified.
func TestIntegrationCrictlImages(t *testing.T) {
	needRoot(t)
	crictl := os.Getenv("CRICTL")
	if crictl == "" {
		t.Skip("CRICTL not set (make test sets it)")
	}
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	d := startDaemonWith(t, configWithOverlay(t, `registries_conf = "`+reg.RegistriesConf(t)+`"`))
	t.Cleanup(func() { d.stop(); assertNoMounts(t, d.dir) })
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(crictl, append([]string{"--runtime-endpoint", "unix://" + d.socket, "--image-endpoint", "unix://" + d.socket}, args...)...).Output()
		if err != nil {
			t.Fatalf("crictl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ref := reg.Ref("busybox:latest")
	if out := run("pull", ref); !regexp.MustCompile(`Image is up to date for [0-9a-f]{64}`).MatchString(out) {
		t.Errorf("crictl pull: %s", out)
	}
	if out := run("images"); !strings.Contains(out, reg.Host+"/busybox") || !strings.Contains(out, "latest") {
		t.Errorf("crictl images: %s", out)
	}
	if out := run("inspecti", ref); !strings.Contains(out, `"repoTags"`) || !strings.Contains(out, `"imageSpec"`) {
		t.Errorf("crictl inspecti: %s", out)
	}
	if out := run("imagefsinfo"); !strings.Contains(out, "usedBytes") {
		t.Errorf("crictl imagefsinfo: %s", out)
	}
	if out := run("rmi", ref); !strings.Contains(out, "Deleted: "+ref) {
		t.Errorf("crictl rmi: %s", out)
	}
	if out := run("images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("images after rmi: %q", out)
	}
}
