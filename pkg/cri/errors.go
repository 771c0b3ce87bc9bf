package cri

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-mini/cri-mini/pkg/store"
)

// toStatus is the one place where domain errors become gRPC statuses (DESIGN.md section 8).
// An error that already carries a status keeps it; the sentinels of pkg/store map to their codes;
// context errors map to DeadlineExceeded and Canceled; everything else is Internal. The message
// is the wrapped error's text, so the context a domain package added reaches the user.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, store.ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, store.ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, store.ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, store.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	default:
		return codes.Internal
	}
}

// invalidArg builds an InvalidArgument status that names the offending request field.
func invalidArg(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, field+": "+format, args...)
}

// alreadyGone turns "not found" into success for the RPCs the CRI wants idempotent (Stop and
// Remove of sandboxes and containers): what is gone is already stopped and removed. Any other
// error is wrapped with what failed.
func alreadyGone(err error, what string) error {
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
