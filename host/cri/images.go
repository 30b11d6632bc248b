package cri

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/sdk"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

// storage returns the storage plugin's client once it can serve images.
func (s *Server) storage() (storagev1.StorageClient, error) {
	inst, err := s.plugins.Storage()
	if err != nil {
		return nil, err
	}
	if err := inst.Require(sdk.CapImages); err != nil {
		return nil, err
	}
	return storagev1.NewStorageClient(inst.Conn), nil
}

// PullImage pulls an image through the storage plugin.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if err := validatePullRef("image.image", ref); err != nil {
		return nil, err
	}
	if err := validateAnnotations("image.annotations", req.GetImage().GetAnnotations()); err != nil {
		return nil, err
	}
	st, err := s.storage()
	if err != nil {
		return nil, err
	}
	var auth *storagev1.AuthConfig
	if a := req.GetAuth(); a != nil {
		auth = &storagev1.AuthConfig{
			Username: a.GetUsername(), Password: a.GetPassword(), Auth: a.GetAuth(),
			ServerAddress: a.GetServerAddress(), IdentityToken: a.GetIdentityToken(), RegistryToken: a.GetRegistryToken(),
		}
	}
	resp, err := st.PullImage(ctx, &storagev1.PullImageRequest{Image: ref, Auth: auth, Annotations: req.GetImage().GetAnnotations()})
	if err != nil {
		return nil, withRef(err, ref)
	}
	return &runtimeapi.PullImageResponse{ImageRef: resp.GetImageRef()}, nil
}

// withRef makes sure an error names the image reference it is about.
func withRef(err error, ref string) error {
	st, ok := status.FromError(err)
	if !ok || strings.Contains(st.Message(), ref) {
		return err
	}
	return status.Errorf(st.Code(), "image %q: %s", ref, st.Message())
}

// ListImages lists images, or those the filter names.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: imgs}, nil
}

func (s *Server) listImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	name := filter.GetImage().GetImage()
	if name != "" {
		if err := validateImageRef("filter.image.image", name); err != nil {
			return nil, err
		}
	}
	st, err := s.storage()
	if err != nil {
		return nil, err
	}
	resp, err := st.ListImages(ctx, &storagev1.ListImagesRequest{Filter: name})
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, 0, len(resp.GetImages()))
	for _, img := range resp.GetImages() {
		out = append(out, toCRIImage(img))
	}
	return out, nil
}

// streamImagesBatch is how many images one StreamImages message carries.
const streamImagesBatch = 100

// StreamImages sends the image list in batches, so nodes with many images
// stay under the gRPC message size limit.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	for start := 0; start < len(imgs); start += streamImagesBatch {
		end := min(start+streamImagesBatch, len(imgs))
		if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: imgs[start:end]}); err != nil {
			return err
		}
	}
	return nil
}

// ImageStatus describes one image; an absent image is a nil image, not an error.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if err := validateImageRef("image.image", ref); err != nil {
		return nil, err
	}
	st, err := s.storage()
	if err != nil {
		return nil, err
	}
	resp, err := st.ImageStatus(ctx, &storagev1.ImageStatusRequest{Image: ref})
	if err != nil {
		return nil, withRef(err, ref)
	}
	if resp.GetImage() == nil {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	out := &runtimeapi.ImageStatusResponse{Image: toCRIImage(resp.GetImage())}
	if req.GetVerbose() {
		info, err := imageInfo(resp.GetImage())
		if err != nil {
			return nil, status.Errorf(codes.Internal, "image %q: %v", ref, err)
		}
		out.Info = info
	}
	return out, nil
}

// imageInfo is the verbose ImageStatus info, shaped as CRI-O's: the
// image's labels and its OCI config.
func imageInfo(img *storagev1.Image) (map[string]string, error) {
	var cfg imgspecv1.Image
	if len(img.GetConfigJson()) > 0 {
		if err := json.Unmarshal(img.GetConfigJson(), &cfg); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(struct {
		Labels    map[string]string `json:"labels,omitempty"`
		ImageSpec *imgspecv1.Image  `json:"imageSpec"`
	}{cfg.Config.Labels, &cfg})
	if err != nil {
		return nil, err
	}
	return map[string]string{"info": string(b)}, nil
}

// RemoveImage removes an image by ID, tag or digest; removing an absent
// image succeeds.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if err := validateImageRef("image.image", ref); err != nil {
		return nil, err
	}
	st, err := s.storage()
	if err != nil {
		return nil, err
	}
	if _, err := st.RemoveImage(ctx, &storagev1.RemoveImageRequest{Image: ref}); err != nil {
		return nil, withRef(err, ref)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the image and container filesystems' usage.
func (s *Server) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	st, err := s.storage()
	if err != nil {
		return nil, err
	}
	resp, err := st.ImageFsInfo(ctx, &storagev1.ImageFsInfoRequest{})
	if err != nil {
		return nil, err
	}
	conv := func(in []*storagev1.FilesystemUsage) []*runtimeapi.FilesystemUsage {
		out := make([]*runtimeapi.FilesystemUsage, 0, len(in))
		for _, u := range in {
			out = append(out, &runtimeapi.FilesystemUsage{
				Timestamp:  u.GetTimestampUnixNano(),
				FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.GetMountpoint()},
				UsedBytes:  &runtimeapi.UInt64Value{Value: u.GetUsedBytes()},
				InodesUsed: &runtimeapi.UInt64Value{Value: u.GetInodesUsed()},
			})
		}
		return out
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems:     conv(resp.GetImageFilesystems()),
		ContainerFilesystems: conv(resp.GetContainerFilesystems()),
	}, nil
}

// toCRIImage converts a storage plugin image; the user becomes a UID when
// numeric and a user name otherwise, as CRI-O reports it.
func toCRIImage(img *storagev1.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.GetId(),
		RepoTags:    nonNil(img.GetRepoTags()),
		RepoDigests: nonNil(img.GetRepoDigests()),
		Size:        img.GetSize(),
		Pinned:      img.GetPinned(),
		Spec:        &runtimeapi.ImageSpec{Image: img.GetId()},
	}
	if user, _, _ := strings.Cut(img.GetUser(), ":"); user != "" {
		if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
			out.Uid = &runtimeapi.Int64Value{Value: uid}
		} else {
			out.Username = user
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
