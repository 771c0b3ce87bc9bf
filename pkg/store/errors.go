// Package store holds cri-mini's persistent metadata (an embedded bbolt database), the sentinel
// errors that every domain package wraps, and the ID index used to resolve ID prefixes.
package store

import "errors"

// Sentinel errors. Domain packages wrap them (fmt.Errorf("container %s: %w", id, ErrNotFound))
// and pkg/cri maps them to gRPC codes in one place.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
)
