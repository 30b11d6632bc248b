package images

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"google.golang.org/grpc/codes"

	"github.com/berth-cri/berth/internal/testimages"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: pulls into a real store")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for overlay mounts")
	}
}

func newService(t *testing.T, reg *testimages.Registry, mod func(*Options)) *Service {
	t.Helper()
	dir := t.TempDir()
	opts := Options{
		Driver: "overlay", GraphRoot: filepath.Join(dir, "graph"), RunRoot: filepath.Join(dir, "run"),
		RegistriesConf: reg.RegistriesConf(t), PullProgressTimeout: time.Minute,
	}
	if mod != nil {
		mod(&opts)
	}
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
		assertNoMounts(t, dir)
	})
	return svc
}

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

func TestIntegrationPullStatusListRemove(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	digest := reg.Push(t, "busybox", testimages.Busybox(t), "1.35", "latest")
	reg.Push(t, "other", testimages.Distinct(t, "other"), "v1")
	svc := newService(t, reg, nil)
	ctx := context.Background()

	id, err := svc.Pull(ctx, reg.Ref("busybox:1.35"), nil)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := svc.Pull(ctx, reg.Ref("busybox:latest"), nil)
	if err != nil || id2 != id {
		t.Fatalf("second tag: %v, %v (want the same image %s)", id2, err, id)
	}
	img, err := svc.Status(ctx, reg.Ref("busybox:latest"))
	if err != nil || img == nil {
		t.Fatalf("status: %v, %v", img, err)
	}
	wantTags := []string{reg.Ref("busybox:1.35"), reg.Ref("busybox:latest")}
	if strings.Join(img.RepoTags, ",") != strings.Join(wantTags, ",") {
		t.Errorf("RepoTags = %v, want %v", img.RepoTags, wantTags)
	}
	wantDigests := []string{reg.Ref("busybox@" + digest)}
	if strings.Join(img.RepoDigests, ",") != strings.Join(wantDigests, ",") {
		t.Errorf("RepoDigests = %v, want %v", img.RepoDigests, wantDigests)
	}
	if img.Size == 0 || len(img.Config) == 0 {
		t.Errorf("size %d, config %d bytes", img.Size, len(img.Config))
	}
	// Every way of naming it finds it.
	for _, name := range []string{id, "sha256:" + id, id[:12], reg.Ref("busybox@" + digest), reg.Ref("busybox:1.35"), "busybox:1.35"} {
		got, err := svc.Status(ctx, name)
		if err != nil || got == nil || got.ID != id {
			t.Errorf("Status(%q) = %v, %v", name, got, err)
		}
	}
	// Short names resolve through the search registries: "busybox" means busybox:latest.
	if got, _ := svc.Status(ctx, "busybox"); got == nil || got.ID != id {
		t.Errorf("short name busybox: %v", got)
	}
	if got, err := svc.Status(ctx, reg.Ref("busybox:nope")); got != nil || err != nil {
		t.Errorf("absent tag: %v, %v", got, err)
	}

	if _, err := svc.Pull(ctx, reg.Ref("other:v1"), nil); err != nil {
		t.Fatal(err)
	}
	all, err := svc.List(ctx, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("List = %d images, %v", len(all), err)
	}
	filtered, err := svc.List(ctx, reg.Ref("other:v1"))
	if err != nil || len(filtered) != 1 || filtered[0].ID == id {
		t.Fatalf("List(filter) = %v, %v", filtered, err)
	}

	// Removing one tag keeps the image and its other tag.
	if err := svc.Remove(reg.Ref("busybox:1.35")); err != nil {
		t.Fatal(err)
	}
	img, _ = svc.Status(ctx, id)
	if img == nil || strings.Join(img.RepoTags, ",") != reg.Ref("busybox:latest") {
		t.Fatalf("after untag: %+v", img)
	}
	// Removing the last tag removes the image.
	if err := svc.Remove(reg.Ref("busybox:latest")); err != nil {
		t.Fatal(err)
	}
	if img, _ := svc.Status(ctx, id); img != nil {
		t.Fatalf("image still there: %+v", img)
	}
	// Removing by digest removes the image with all its tags.
	if _, err := svc.Pull(ctx, reg.Ref("busybox:1.35"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Pull(ctx, reg.Ref("busybox:latest"), nil); err != nil {
		t.Fatal(err)
	}
	if err := svc.Remove(reg.Ref("busybox@" + digest)); err != nil {
		t.Fatal(err)
	}
	if img, _ := svc.Status(ctx, id); img != nil {
		t.Fatalf("image still there after removal by digest: %+v", img)
	}
	// Removing what is not there succeeds.
	for _, name := range []string{id, reg.Ref("busybox:latest"), "nothere"} {
		if err := svc.Remove(name); err != nil {
			t.Errorf("Remove(%q) of an absent image: %v", name, err)
		}
	}
}

func TestIntegrationPullByDigest(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	digest := reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	svc := newService(t, reg, nil)
	ctx := context.Background()
	ref := reg.Ref("busybox@" + digest)
	id, err := svc.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := svc.Status(ctx, ref)
	if err != nil || img == nil || img.ID != id {
		t.Fatalf("status by digest: %v %v", img, err)
	}
	if len(img.RepoTags) != 0 || len(img.RepoDigests) != 1 || img.RepoDigests[0] != ref {
		t.Errorf("pulled by digest: tags %v digests %v", img.RepoTags, img.RepoDigests)
	}
}

func TestIntegrationImageUser(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "user", testimages.WithUser(t), "latest")
	svc := newService(t, reg, nil)
	ctx := context.Background()
	if _, err := svc.Pull(ctx, reg.Ref("user:latest"), nil); err != nil {
		t.Fatal(err)
	}
	img, err := svc.Status(ctx, reg.Ref("user:latest"))
	if err != nil || img.User != "1000" {
		t.Fatalf("user = %q, %v", img.User, err)
	}
}

func TestIntegrationRootfsWhiteoutsAndUsage(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "layered", testimages.Layered(t), "latest")
	svc := newService(t, reg, nil)
	ctx := context.Background()
	imageID, err := svc.Pull(ctx, reg.Ref("layered:latest"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.CreateRootfs("ctr1", reg.Ref("layered:latest"), "ctr1-name", false)
	if err != nil || got != imageID {
		t.Fatalf("CreateRootfs = %q, %v", got, err)
	}
	// Again with the same image: no-op. Another container with the same name: AlreadyExists.
	if _, err := svc.CreateRootfs("ctr1", imageID, "ctr1-name", false); err != nil {
		t.Fatalf("idempotent CreateRootfs: %v", err)
	}
	if _, err := svc.CreateRootfs("ctr2", imageID, "ctr1-name", false); Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate name: %v (%v)", err, Code(err))
	}
	if _, err := svc.CreateRootfs("ctr3", "nothere:latest", "", false); Code(err) != codes.NotFound {
		t.Fatalf("unknown image: %v (%v)", err, Code(err))
	}
	root, err := svc.MountRootfs("ctr1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/y", "a/z", "d/new", "bin/busybox"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s missing: %v", p, err)
		}
	}
	for _, p := range []string{"a/x", "d/old1", "d/old2", "a/.wh.x", "d/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s should not be visible: %v", p, err)
		}
	}
	before, err := svc.RootfsUsage("ctr1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "written"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := svc.RootfsUsage("ctr1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Bytes < before.Bytes+1<<20 || after.Inodes != before.Inodes+1 {
		t.Errorf("usage before %+v after %+v: want +1 MiB and +1 inode", before, after)
	}
	if err := svc.UnmountRootfs("ctr1"); err != nil {
		t.Fatal(err)
	}
	if err := svc.UnmountRootfs("ctr1"); err != nil {
		t.Fatalf("second unmount: %v", err)
	}
	// The image is in use: it cannot be removed.
	if err := svc.Remove(imageID); Code(err) != codes.FailedPrecondition {
		t.Errorf("removing an image in use: %v (%v)", err, Code(err))
	}
	if err := svc.RemoveRootfs("ctr1"); err != nil {
		t.Fatal(err)
	}
	if err := svc.RemoveRootfs("ctr1"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	// The name is free at once, while the old layer is deleted behind.
	if _, err := svc.CreateRootfs("ctr4", imageID, "ctr1-name", false); err != nil {
		t.Fatalf("the removed container's name again: %v", err)
	}
	// A removal accepted by a process that died before deleting the layer
	// (here: marked by hand) is finished by the next one.
	if err := svc.store.SetNames("ctr4", []string{removedPrefix + "ctr4"}); err != nil {
		t.Fatal(err)
	}
	svc.resumeRemovals() // what New does
	svc.flushRemovals()
	if _, err := svc.store.Container("ctr4"); err == nil {
		t.Error("a removal left by the previous process was not finished")
	}
	if err := svc.Remove(imageID); err != nil {
		t.Fatal(err)
	}
	fs, err := svc.FsInfo()
	if err != nil || fs.Bytes == 0 || fs.Inodes == 0 {
		t.Errorf("FsInfo = %+v, %v", fs, err)
	}
	// A pull right after is reflected at once, not after the cache expires.
	if _, err := svc.Pull(ctx, reg.Ref("layered:latest"), nil); err != nil {
		t.Fatal(err)
	}
	if fs2, err := svc.FsInfo(); err != nil || fs2.Inodes <= fs.Inodes || fs2.Bytes <= fs.Bytes {
		t.Errorf("FsInfo after a pull = %+v (before %+v), %v", fs2, fs, err)
	}
}

func TestIntegrationReadOnlyRootfs(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	svc := newService(t, reg, nil)
	if _, err := svc.Pull(context.Background(), reg.Ref("busybox:latest"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateRootfs("ro", reg.Ref("busybox:latest"), "", true); err != nil {
		t.Fatal(err)
	}
	root, err := svc.MountRootfs("ro")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.RemoveRootfs("ro") //nolint:errcheck
	if err := os.WriteFile(filepath.Join(root, "x"), nil, 0o644); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write to a read-only rootfs: %v", err)
	}
}

func TestIntegrationAuth(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t, testimages.WithBasicAuth("berth", "s3cret"))
	reg.Push(t, "private", testimages.Busybox(t), "latest")
	svc := newService(t, reg, nil)
	ctx := context.Background()
	ref := reg.Ref("private:latest")
	for _, tc := range []struct {
		name string
		auth *Auth
		code codes.Code
	}{
		{"no credentials", nil, codes.Unauthenticated},
		{"wrong password", &Auth{Username: "berth", Password: "nope"}, codes.Unauthenticated},
		{"malformed auth", &Auth{Auth: "%%%"}, codes.InvalidArgument},
		{"username and password", &Auth{Username: "berth", Password: "s3cret"}, codes.OK},
		{"auth field", &Auth{Auth: base64.StdEncoding.EncodeToString([]byte("berth:s3cret"))}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.Pull(ctx, ref, tc.auth)
			if Code(err) != tc.code {
				t.Fatalf("err = %v (code %v), want %v", err, Code(err), tc.code)
			}
		})
	}
}

func TestIntegrationNotFound(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	svc := newService(t, reg, nil)
	for _, ref := range []string{reg.Ref("busybox:missing"), reg.Ref("norepo:latest")} {
		_, err := svc.Pull(context.Background(), ref, nil)
		if Code(err) != codes.NotFound || !strings.Contains(err.Error(), ref) {
			t.Errorf("pull %s: %v (code %v), want NotFound naming it", ref, err, Code(err))
		}
	}
	if imgs, err := svc.List(context.Background(), ""); err != nil || len(imgs) != 0 {
		t.Errorf("failed pulls left images: %v %v", imgs, err)
	}
}

// TestIntegrationConcurrentPullsShareOneDownload: 8 pulls of one image at
// once fetch each blob once.
func TestIntegrationConcurrentPullsShareOneDownload(t *testing.T) {
	needRoot(t)
	img := testimages.Large(t, 3, 1<<20)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	// Slow blob downloads down so the pulls really overlap.
	reg := testimages.StartRegistry(t, testimages.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				time.Sleep(200 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	}))
	reg.Push(t, "big", img, "latest")
	reg.ResetCounts()
	svc := newService(t, reg, nil)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = svc.Pull(context.Background(), reg.Ref("big:latest"), nil)
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("pull %d: %q, %v", i, ids[i], errs[i])
		}
	}
	// Each layer once, plus the config blob once.
	if got, want := reg.BlobGets("big"), len(layers)+1; got != want {
		t.Errorf("blob GETs = %d, want %d (one download)", got, want)
	}
}

// TestIntegrationStalledPullIsCancelled: a registry that stops sending
// makes the pull fail with DeadlineExceeded after the progress timeout.
func TestIntegrationStalledPullIsCancelled(t *testing.T) {
	needRoot(t)
	release := make(chan struct{})
	reg := testimages.StartRegistry(t, testimages.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	}))
	defer close(release)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	svc := newService(t, reg, func(o *Options) { o.PullProgressTimeout = time.Second })
	start := time.Now()
	_, err := svc.Pull(context.Background(), reg.Ref("busybox:latest"), nil)
	if Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("stalled pull: %v (code %v)", err, Code(err))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stalled pull took %v to be cancelled", d)
	}
	if imgs, _ := svc.List(context.Background(), ""); len(imgs) != 0 {
		t.Errorf("a cancelled pull left %d images", len(imgs))
	}
}

// TestIntegrationLoopbackPlainHTTP: with no registries.conf entry, a
// registry on 127.0.0.1 is reached over plain HTTP only when allowed.
func TestIntegrationLoopbackPlainHTTP(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	empty := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(empty, []byte("unqualified-search-registries = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, allow := range []bool{false, true} {
		svc := newService(t, reg, func(o *Options) { o.RegistriesConf, o.PlainHTTPLoopback = empty, allow })
		_, err := svc.Pull(context.Background(), reg.Ref("busybox:latest"), nil)
		if (err == nil) != allow {
			t.Errorf("PlainHTTPLoopback=%v: pull error %v", allow, err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.1.2.3": true, "localhost:80": true, "[::1]:5000": true,
		"docker.io": false, "10.0.0.1:5000": false, "example.com:443": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v", host, got)
		}
	}
}

// TestIntegrationDockerHubNormalisation: short names and docker.io names
// normalise to docker.io/library/..., here remapped (not mirrored, so
// nothing can fall back to the real Docker Hub) to the test registry.
func TestIntegrationDockerHubNormalisation(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "library/busybox", testimages.Busybox(t), "latest")
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, []byte(`unqualified-search-registries = ["docker.io"]
short-name-mode = "disabled"

[[registry]]
prefix = "docker.io"
location = "`+reg.Host+`"
insecure = true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, reg, func(o *Options) { o.RegistriesConf = conf })
	ctx := context.Background()
	id, err := svc.Pull(ctx, "busybox", nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := svc.Status(ctx, id)
	if err != nil || img == nil || len(img.RepoTags) != 1 || img.RepoTags[0] != "docker.io/library/busybox:latest" {
		t.Fatalf("status = %+v, %v", img, err)
	}
	for _, name := range []string{"busybox", "busybox:latest", "docker.io/busybox", "docker.io/library/busybox:latest", "library/busybox"} {
		if got, err := svc.Status(ctx, name); err != nil || got == nil || got.ID != id {
			t.Errorf("Status(%q) = %v, %v", name, got, err)
		}
	}
}

// TestIntegrationSignaturePolicyRejects: policy.json is honoured.
func TestIntegrationSignaturePolicyRejects(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default": [{"type": "reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, reg, func(o *Options) { o.PolicyJSON = policy })
	_, err := svc.Pull(context.Background(), reg.Ref("busybox:latest"), nil)
	if Code(err) != codes.PermissionDenied {
		t.Fatalf("pull against a rejecting policy: %v (code %v)", err, Code(err))
	}
}

// TestIntegrationConcurrentRemoves: simultaneous removals all succeed, and
// each finds the image gone when it returns.
func TestIntegrationConcurrentRemoves(t *testing.T) {
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	svc := newService(t, reg, nil)
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		id, err := svc.Pull(ctx, reg.Ref("busybox:latest"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := svc.Remove(id); err != nil {
					t.Errorf("concurrent Remove: %v", err)
				}
				if img, _ := svc.Status(ctx, id); img != nil {
					t.Errorf("image still visible after Remove returned")
				}
			}()
		}
		wg.Wait()
	}
}
