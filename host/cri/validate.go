package cri

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
