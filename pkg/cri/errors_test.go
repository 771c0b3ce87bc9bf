package cri

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cri-mini/cri-mini/pkg/store"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"not found", fmt.Errorf("container abc: %w", store.ErrNotFound), codes.NotFound},
		{"already exists", fmt.Errorf("pod x: %w", store.ErrAlreadyExists), codes.AlreadyExists},
		{"invalid", fmt.Errorf("metadata.name: %w", store.ErrInvalidArgument), codes.InvalidArgument},
		{"precondition", fmt.Errorf("image in use: %w", store.ErrFailedPrecondition), codes.FailedPrecondition},
		{"unavailable", fmt.Errorf("monitor: %w", store.ErrUnavailable), codes.Unavailable},
		{"deadline", fmt.Errorf("pull: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"canceled", fmt.Errorf("pull: %w", context.Canceled), codes.Canceled},
		{"other", errors.New("disk on fire"), codes.Internal},
		{"status kept", status.Error(codes.ResourceExhausted, "slow down"), codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(tt.err)
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("%v is not a status", got)
			}
			if st.Code() != tt.want {
				t.Fatalf("code = %v, want %v", st.Code(), tt.want)
			}
			// The domain's context must reach the user.
			if st.Message() != tt.err.Error() && tt.name != "status kept" {
				t.Fatalf("message = %q, want %q", st.Message(), tt.err.Error())
			}
		})
	}
	if toStatus(nil) != nil {
		t.Fatal("nil error must stay nil")
	}
}

func TestAlreadyGone(t *testing.T) {
	if err := alreadyGone(nil, "stop x"); err != nil {
		t.Fatalf("nil: %v", err)
	}
	if err := alreadyGone(fmt.Errorf("container x: %w", store.ErrNotFound), "stop x"); err != nil {
		t.Fatalf("not found must be success, got %v", err)
	}
	err := alreadyGone(fmt.Errorf("monitor: %w", store.ErrUnavailable), "stop x")
	if !errors.Is(err, store.ErrUnavailable) || err.Error() != "stop x: monitor: unavailable" {
		t.Fatalf("other errors keep their cause and gain context: %v", err)
	}
}
