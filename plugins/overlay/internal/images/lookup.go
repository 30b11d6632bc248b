package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/shortnames"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// Image is what the plugin reports of a stored image.
type Image struct {
	ID          string
	RepoTags    []string
	RepoDigests []string
	Size        uint64
	User        string
	Pinned      bool
	Config      []byte // OCI image config, JSON
}

var (
	fullIDRE   = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)
	idPrefixRE = regexp.MustCompile(`^[0-9a-f]{3,63}$`)
)

func storageRef(store storage.Store, id string) (types.ImageReference, error) {
	ref, err := istorage.Transport.NewStoreReference(store, nil, id)
	if err != nil {
		return nil, fmt.Errorf("reference image %s: %w", id, err)
	}
	return ref, nil
}

// Lookup finds the stored image a CRI image string names: a full image ID
// ("sha256:" optional), a unique ID prefix, a name with a digest, or a name
// with or without a tag (short names resolve through registries.conf).
// It returns errNotFound (wrapped) when there is none.
func (s *Service) Lookup(name string) (*storage.Image, error) {
	if fullIDRE.MatchString(name) {
		if img, err := s.store.Image(strings.TrimPrefix(name, "sha256:")); err == nil {
			return img, nil
		}
	}
	if idPrefixRE.MatchString(name) {
		if img := s.byIDPrefix(name); img != nil {
			return img, nil
		}
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err == nil {
		if canonical, ok := named.(reference.Canonical); ok {
			return s.byDigest(canonical)
		}
	}
	candidates, err := shortnames.ResolveLocally(s.sys, name)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", name, errNotFound)
	}
	for _, c := range candidates {
		if img, err := s.store.Image(c.String()); err == nil {
			return img, nil
		}
	}
	return nil, fmt.Errorf("image %q: %w", name, errNotFound)
}

func (s *Service) byIDPrefix(prefix string) *storage.Image {
	imgs, err := s.store.Images()
	if err != nil {
		return nil
	}
	var found *storage.Image
	for i := range imgs {
		if strings.HasPrefix(imgs[i].ID, prefix) {
			if found != nil {
				return nil // ambiguous
			}
			found = &imgs[i]
		}
	}
	return found
}

// byDigest finds an image by repo@digest: its manifest digest must match and
// it must carry a name in that repository.
func (s *Service) byDigest(ref reference.Canonical) (*storage.Image, error) {
	imgs, err := s.store.ImagesByDigest(ref.Digest())
	if err != nil && !errors.Is(err, storage.ErrImageUnknown) {
		return nil, err
	}
	repo := reference.TrimNamed(ref).String()
	for _, img := range imgs {
		for _, n := range img.Names {
			if named, err := reference.ParseNormalizedNamed(n); err == nil && reference.TrimNamed(named).String() == repo {
				return img, nil
			}
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref.String(), errNotFound)
}

// Describe builds the CRI view of an image: RepoTags and RepoDigests as
// CRI-O reports them (every repository the image is named in, combined with
// every manifest digest it is known by).
func (s *Service) Describe(ctx context.Context, img *storage.Image) (*Image, error) {
	var tags []reference.NamedTagged
	var digested []reference.Canonical
	for _, n := range img.Names {
		named, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		switch r := named.(type) {
		case reference.Canonical:
			digested = append(digested, r)
		case reference.NamedTagged:
			tags = append(tags, r)
		}
	}
	out := &Image{ID: img.ID, RepoTags: []string{}, RepoDigests: []string{}}
	for _, t := range tags {
		out.RepoTags = append(out.RepoTags, t.String())
	}
	sort.Strings(out.RepoTags)

	digests := []digest.Digest{}
	if img.Digest != "" {
		digests = append(digests, img.Digest)
	}
	for _, d := range img.Digests {
		if d != img.Digest {
			digests = append(digests, d)
		}
	}
	seen := map[string]bool{}
	for _, d := range digested {
		if !seen[d.String()] {
			seen[d.String()] = true
			out.RepoDigests = append(out.RepoDigests, d.String())
		}
	}
	var repos []reference.Named
	for _, t := range tags {
		repos = append(repos, reference.TrimNamed(t))
	}
	for _, d := range digested {
		repos = append(repos, reference.TrimNamed(d))
	}
	for _, repo := range repos {
		for _, d := range digests {
			if r, err := reference.WithDigest(repo, d); err == nil && !seen[r.String()] {
				seen[r.String()] = true
				out.RepoDigests = append(out.RepoDigests, r.String())
			}
		}
	}
	sort.Strings(out.RepoDigests)

	if size, err := s.store.ImageSize(img.ID); err == nil && size > 0 {
		out.Size = uint64(size)
	}
	cfg, err := s.ociConfig(ctx, img)
	if err != nil {
		return nil, err
	}
	out.User = cfg.Config.User
	if out.Config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	for _, n := range img.Names {
		for _, pat := range s.opts.PinnedImages {
			if ok, _ := path.Match(pat, n); ok || pat == n {
				out.Pinned = true
			}
		}
	}
	return out, nil
}

// List describes every image, or those a filter names.
func (s *Service) List(ctx context.Context, filter string) ([]*Image, error) {
	if filter != "" {
		img, err := s.Lookup(filter)
		if errors.Is(err, errNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		d, err := s.Describe(ctx, img)
		if err != nil {
			return nil, err
		}
		return []*Image{d}, nil
	}
	imgs, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]*Image, 0, len(imgs))
	for i := range imgs {
		d, err := s.Describe(ctx, &imgs[i])
		if err != nil {
			// An image removed while listing is not an error.
			if errors.Is(err, storage.ErrImageUnknown) {
				continue
			}
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Status describes the image name refers to, or returns nil when absent.
func (s *Service) Status(ctx context.Context, name string) (*Image, error) {
	img, err := s.Lookup(name)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.Describe(ctx, img)
}

// Remove removes what name refers to. An ID or a digest removes the image
// with all its names; a tag removes that tag, and the image with its last
// name. Removing an absent image succeeds (the CRI wants idempotence).
func (s *Service) Remove(name string) error {
	// One removal at a time: a caller must not return while another is
	// half-way through deleting the same image, or its ImageStatus right
	// after would still see it.
	s.removeMu.Lock()
	defer s.removeMu.Unlock()
	s.flushRemovals()
	img, err := s.Lookup(name)
	if errors.Is(err, errNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	untag := ""
	if !fullIDRE.MatchString(name) && !idPrefixRE.MatchString(name) {
		if named, err := reference.ParseNormalizedNamed(name); err == nil {
			if _, digested := named.(reference.Canonical); !digested {
				for _, c := range resolveLocal(s.sys, name) {
					for _, n := range img.Names {
						if n == c {
							untag = n
						}
					}
				}
			}
		}
	}
	if untag != "" && len(img.Names) > 1 {
		if err := s.store.RemoveNames(img.ID, []string{untag}); err != nil {
			return fmt.Errorf("untag %s: %w", untag, err)
		}
		return nil
	}
	if _, err := s.store.DeleteImage(img.ID, true); err != nil {
		if errors.Is(err, storage.ErrImageUnknown) || errors.Is(err, storage.ErrNotAnImage) {
			return nil
		}
		return fmt.Errorf("delete image %s: %w", img.ID, err)
	}
	s.forget(img.ID)
	s.invalidateFs()
	return nil
}

func resolveLocal(sys *types.SystemContext, name string) []string {
	cands, err := shortnames.ResolveLocally(sys, name)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(cands))
	for _, c := range cands {
		out = append(out, c.String())
	}
	return out
}
