package images

import (
	"context"
	"errors"
	"strings"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	"go.podman.io/storage"
	"google.golang.org/grpc/codes"
)

// Code classifies an error from this package for the gRPC boundary.
func Code(err error) codes.Code {
	var unauthorized docker.ErrUnauthorizedForCredentials
	var ec errcode.Error
	var rejected signature.PolicyRequirementError
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, ErrExists), errors.Is(err, storage.ErrDuplicateName), errors.Is(err, storage.ErrDuplicateID):
		return codes.AlreadyExists
	case errors.Is(err, errNotFound), errors.Is(err, storage.ErrImageUnknown), errors.Is(err, storage.ErrContainerUnknown), errors.Is(err, storage.ErrLayerUnknown),
		errors.Is(err, storage.ErrNotAContainer), errors.Is(err, storage.ErrNotAnImage):
		return codes.NotFound
	case errors.Is(err, storage.ErrImageUsedByContainer):
		return codes.FailedPrecondition
	case errors.Is(err, ErrStalled), errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, docker.ErrTooManyRequests):
		return codes.ResourceExhausted
	case errors.As(err, &unauthorized):
		return codes.Unauthenticated
	case errors.As(err, &rejected):
		return codes.PermissionDenied
	case errors.As(err, &ec):
		switch ec.Code.Descriptor().Value {
		case "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN":
			return codes.NotFound
		case "UNAUTHORIZED":
			return codes.Unauthenticated
		case "DENIED":
			return codes.PermissionDenied
		case "TOOMANYREQUESTS":
			return codes.ResourceExhausted
		}
	}
	// Some registry answers reach us only as text.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "manifest unknown"), strings.Contains(msg, "name unknown"), strings.Contains(msg, "not found"):
		return codes.NotFound
	case strings.Contains(msg, "authentication required"), strings.Contains(msg, "unauthorized"):
		return codes.Unauthenticated
	case strings.Contains(msg, "denied"):
		return codes.PermissionDenied
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"), strings.Contains(msg, "i/o timeout"):
		return codes.Unavailable
	}
	return codes.Unknown
}
