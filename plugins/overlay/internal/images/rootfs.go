package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.podman.io/storage"

	"golang.org/x/sys/unix"
)

// ErrExists marks a container ID or name already taken by another rootfs.
var ErrExists = errors.New("already exists")

// rootfsMeta is stored with each container layer.
type rootfsMeta struct {
	Image    string `json:"image"`
	ReadOnly bool   `json:"read_only"`
}

// CreateRootfs creates a container's writable layer on the image. Calling it
// again for the same container and image is a no-op.
func (s *Service) CreateRootfs(id, image, name string, readOnly bool) (string, error) {
	img, err := s.Lookup(image)
	if err != nil {
		return "", err
	}
	if c, err := s.store.Container(id); err == nil {
		if c.ImageID == img.ID {
			return img.ID, nil
		}
		return "", fmt.Errorf("%w: container %s uses image %s", ErrExists, id, c.ImageID)
	}
	meta, err := json.Marshal(rootfsMeta{Image: image, ReadOnly: readOnly})
	if err != nil {
		return "", err
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	// Volatile, as CRI-O creates every container: the writable layer's
	// records and the overlay upper dir are not fsynced. A container does not
	// outlive a reboot, which is the only thing fsync guards against here
	// (a killed process loses nothing); Open's GarbageCollect removes what
	// a power loss leaves unreferenced.
	opts := &storage.ContainerOptions{Volatile: true}
	if readOnly {
		opts.MountOpts = []string{"ro"}
	}
	if _, err := s.store.CreateContainer(id, names, img.ID, "", string(meta), opts); err != nil {
		if errors.Is(err, storage.ErrDuplicateID) || errors.Is(err, storage.ErrDuplicateName) {
			return "", fmt.Errorf("%w: %v", ErrExists, err)
		}
		return "", fmt.Errorf("create rootfs for %s: %w", id, err)
	}
	s.invalidateFs()
	return img.ID, nil
}

// MountRootfs mounts the container's root filesystem and returns its path.
// Mounts are counted: each MountRootfs needs an UnmountRootfs.
func (s *Service) MountRootfs(id string) (string, error) {
	p, err := s.store.Mount(id, "")
	if err != nil {
		return "", fmt.Errorf("mount rootfs of %s: %w", id, err)
	}
	return p, nil
}

// UnmountRootfs unmounts it; unmounting an unmounted or unknown rootfs succeeds.
func (s *Service) UnmountRootfs(id string) error {
	if _, err := s.store.Unmount(id, true); err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("unmount rootfs of %s: %w", id, err)
	}
	return nil
}

// removedPrefix names a container whose removal was accepted: its layer is
// deleted in the background, and at the next start if this process dies
// first.
const removedPrefix = "berth-removed-"

// RemoveRootfs unmounts the writable layer and hands it to the background
// deleter; idempotent. Deleting a layer's files costs tens of milliseconds
// on a journaling filesystem (containerd's snapshots are garbage-collected
// the same way); the caller need not wait for it. The container's name is
// released at once, so a new container can take it.
func (s *Service) RemoveRootfs(id string) error {
	if err := s.UnmountRootfs(id); err != nil {
		return err
	}
	if err := s.store.SetNames(id, []string{removedPrefix + id}); err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("remove rootfs of %s: %w", id, err)
	}
	s.queueDelete(id)
	return nil
}

func (s *Service) queueDelete(id string) {
	s.reaping.Add(1)
	select {
	case s.reap <- id:
	default:
		// The deleter is far behind: delete here.
		s.deleteRemoved(id)
	}
}

// reaper deletes removed containers' layers, one at a time.
func (s *Service) reaper() {
	for id := range s.reap {
		s.deleteRemoved(id)
	}
}

func (s *Service) deleteRemoved(id string) {
	defer s.reaping.Done()
	if err := s.store.DeleteContainer(id); err != nil && !gone(err) {
		s.log.Warn("deleting a removed container's layer", "container", id, "error", err)
		return
	}
	s.invalidateFs()
}

// flushRemovals waits until every removed container's layer is deleted
// (an image those layers sit on cannot be removed before).
func (s *Service) flushRemovals() { s.reaping.Wait() }

// FsUsage is a filesystem's usage.
type FsUsage struct {
	At         time.Time
	Mountpoint string
	Bytes      uint64
	Inodes     uint64
	// Of the filesystem holding it.
	CapacityBytes, InodesTotal, InodesFree uint64
}

// withFilesystem adds the size and inode counts of the filesystem holding
// u.Mountpoint.
func (u *FsUsage) withFilesystem() *FsUsage {
	var st unix.Statfs_t
	if err := unix.Statfs(u.Mountpoint, &st); err == nil {
		u.CapacityBytes = st.Blocks * uint64(st.Bsize)
		u.InodesTotal, u.InodesFree = st.Files, st.Ffree
	}
	return u
}

// RootfsUsage measures a container's writable layer.
func (s *Service) RootfsUsage(id string) (*FsUsage, error) {
	c, err := s.store.Container(id)
	if err != nil {
		return nil, fmt.Errorf("rootfs of %s: %w", id, err)
	}
	dir := s.layerDiffDir(c.LayerID)
	b, n, err := diskUsage(dir)
	if err != nil {
		return nil, err
	}
	return (&FsUsage{At: time.Now(), Mountpoint: dir, Bytes: b, Inodes: n}).withFilesystem(), nil
}

// layerDiffDir is where the driver keeps a layer's own files.
func (s *Service) layerDiffDir(layer string) string {
	root := s.store.GraphRoot()
	if s.store.GraphDriverName() == "vfs" {
		return filepath.Join(root, "vfs", "dir", layer)
	}
	return filepath.Join(root, s.store.GraphDriverName(), layer, "diff")
}

// invalidateFs drops the cached FsInfo after the store changed.
func (s *Service) invalidateFs() {
	s.fsMu.Lock()
	s.fsInfo = nil
	s.fsMu.Unlock()
}

// FsInfo measures the store; cached for a few seconds (or until the store
// changes) because kubelet asks often and a walk of a large store is not free.
func (s *Service) FsInfo() (*FsUsage, error) {
	s.fsMu.Lock()
	defer s.fsMu.Unlock()
	if s.fsInfo != nil && time.Since(s.fsAt) < 5*time.Second {
		return s.fsInfo, nil
	}
	root := s.store.GraphRoot()
	b, n, err := diskUsage(root)
	if err != nil {
		return nil, err
	}
	s.fsInfo, s.fsAt = &FsUsage{At: time.Now(), Mountpoint: root, Bytes: b, Inodes: n}, time.Now()
	return s.fsInfo, nil
}

// diskUsage sums allocated bytes and counts inodes under dir, each inode
// once, without crossing into other filesystems (mounted container roots).
func diskUsage(dir string) (uint64, uint64, error) {
	var root syscall.Stat_t
	if err := syscall.Lstat(dir, &root); err != nil {
		return 0, 0, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	seen := map[uint64]bool{}
	var bytes, inodes uint64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if st.Dev != root.Dev {
			return filepath.SkipDir
		}
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return bytes, inodes, nil
}

// gone reports errors meaning the container (or its layer) does not exist.
func gone(err error) bool {
	return errors.Is(err, storage.ErrContainerUnknown) || errors.Is(err, storage.ErrNotAContainer) || errors.Is(err, storage.ErrLayerUnknown)
}
