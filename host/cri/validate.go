package cri

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Bounds on untrusted input.
const (
	maxImageRefLen  = 4096
	maxAnnotations  = 128
	maxAnnotationKV = 64 << 10 // bytes, key plus value
)

var imageIDRE = regexp.MustCompile(`^(sha256:)?[0-9a-f]{3,64}$`)

// invalid returns an InvalidArgument error naming the field.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// validatePullRef checks an image reference given to PullImage: it must be
// a well-formed name (short names allowed), with an optional tag or digest.
func validatePullRef(field, ref string) error {
	if ref == "" {
		return invalid(field, "must not be empty")
	}
	if len(ref) > maxImageRefLen {
		return invalid(field, "is %d bytes long; at most %d", len(ref), maxImageRefLen)
	}
	if strings.TrimSpace(ref) != ref {
		return invalid(field, "%q has leading or trailing white space", ref)
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return invalid(field, "%q is not a valid image reference: %v", ref, err)
	}
	return nil
}

// validateImageRef checks an image given to ImageStatus, RemoveImage or a
// list filter: an image ID (or a prefix of one) or a reference.
func validateImageRef(field, ref string) error {
	if ref != "" && imageIDRE.MatchString(ref) {
		return nil
	}
	return validatePullRef(field, ref)
}

// validateAnnotations bounds a map of annotations.
func validateAnnotations(field string, m map[string]string) error {
	if len(m) > maxAnnotations {
		return invalid(field, "has %d entries; at most %d", len(m), maxAnnotations)
	}
	for k, v := range m {
		if k == "" {
			return invalid(field, "has an empty key")
		}
		if len(k)+len(v) > maxAnnotationKV {
			return invalid(field+"["+truncate(k, 64)+"]", "is %d bytes; at most %d", len(k)+len(v), maxAnnotationKV)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// sysctlRE is a sysctl name, dotted or slashed (kubelet accepts both).
var sysctlRE = regexp.MustCompile(`^[a-z0-9]([-_a-z0-9]*[a-z0-9])?([./][a-z0-9]([-_a-z0-9]*[a-z0-9])?)*$`)

// ipcSysctls are the namespaced sysctls of the IPC namespace (as runc and
// kubelet list them); fs.mqueue.* too.
var ipcSysctls = map[string]bool{"kernel.sem": true, "kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true,
	"kernel.shm_rmid_forced": true, "kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true}

// validateSysctls accepts only sysctls of namespaces the pod has of its
// own: net.* needs the pod's network namespace, the IPC ones its IPC
// namespace. Anything else would change the node, and runc would refuse it
// later, after the pod exists.
func validateSysctls(c *runtimeapi.PodSandboxConfig) error {
	ns := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	for k, v := range c.GetLinux().GetSysctls() {
		field := "config.linux.sysctls[" + truncate(k, 64) + "]"
		if len(k) > 256 || !sysctlRE.MatchString(k) {
			return invalid(field, "%q is not a sysctl name", truncate(k, 64))
		}
		if len(v) > 4096 || strings.ContainsAny(v, "\x00\n") {
			return invalid(field, "value must be at most 4096 bytes, without NUL or newline")
		}
		name := strings.ReplaceAll(k, "/", ".")
		switch {
		case strings.HasPrefix(name, "net."):
			if ns.GetNetwork() == runtimeapi.NamespaceMode_NODE {
				return invalid(field, "net.* sysctls need the pod's own network namespace; this pod uses the node's")
			}
		case ipcSysctls[name] || strings.HasPrefix(name, "fs.mqueue."):
			if ns.GetIpc() == runtimeapi.NamespaceMode_NODE {
				return invalid(field, "IPC sysctls need the pod's own IPC namespace; this pod uses the node's")
			}
		default:
			return invalid(field, "%s is not a namespaced sysctl (allowed: net.*, fs.mqueue.*, kernel.sem, kernel.shm*, kernel.msg*)", name)
		}
	}
	return nil
}

// Annotations that size a pod's /dev/shm (Berth's own and CRI-O's, so pods
// written for CRI-O keep working).
const (
	shmSizeAnnotation     = "io.berth.shm-size"
	crioShmSizeAnnotation = "io.kubernetes.cri-o.ShmSize"
	defaultShmSize        = 64 << 20
	maxShmSize            = 1 << 40
)

var quantityRE = regexp.MustCompile(`^([0-9]+)(|k|K|Ki|M|Mi|G|Gi|T|Ti)$`)

// shmSize is the size of a pod's /dev/shm: 64 MiB unless an annotation
// asks for another (a Kubernetes quantity such as "256Mi").
func shmSize(c *runtimeapi.PodSandboxConfig) (int64, error) {
	for _, a := range []string{shmSizeAnnotation, crioShmSizeAnnotation} {
		v, ok := c.GetAnnotations()[a]
		if !ok {
			continue
		}
		field := "config.annotations[" + a + "]"
		m := quantityRE.FindStringSubmatch(v)
		if m == nil {
			return 0, invalid(field, "%q is not a size (want a quantity such as 256Mi)", truncate(v, 64))
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		mult := map[string]int64{"": 1, "k": 1e3, "K": 1e3, "Ki": 1 << 10, "M": 1e6, "Mi": 1 << 20, "G": 1e9, "Gi": 1 << 30, "T": 1e12, "Ti": 1 << 40}[m[2]]
		if err != nil || n <= 0 || n > maxShmSize/mult {
			return 0, invalid(field, "%q must be between 1 byte and 1Ti", v)
		}
		return n * mult, nil
	}
	return defaultShmSize, nil
}
