package cri

import (
	"context"
	"fmt"
	"path"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// Interceptor gives every RPC a contextual logger (rpc name and request id), turns a panic into
// an Internal error so one bad request never takes the daemon down, and maps domain errors to
// gRPC statuses in one place.
type Interceptor struct {
	logger klog.Logger
	nextID atomic.Uint64
	// onChurn, when set, is called after every RPC that creates or destroys something
	// (see isChurn).
	onChurn func()
}

// NewInterceptor returns an interceptor whose per-request loggers derive from logger.
func NewInterceptor(logger klog.Logger) *Interceptor {
	return &Interceptor{logger: logger}
}

// OnChurn makes f run after every RPC that creates or destroys a pod, a container or an
// image: the daemon uses it to release memory once such a burst is over. Reads and the
// frequent small calls (status, lists, stats, exec probes, log reopens) do not count:
// kubelet makes them all the time, and releasing after each would only make the heap fault
// its pages back in.
func (i *Interceptor) OnChurn(f func()) { i.onChurn = f }

// isChurn reports whether the RPC (its short name) creates or destroys an object.
func isChurn(rpc string) bool {
	switch rpc {
	case "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox",
		"CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
		"PullImage", "RemoveImage":
		return true
	}
	return false
}

// ServerOptions returns the grpc.ServerOptions that install the interceptor.
func (i *Interceptor) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(i.Unary),
		grpc.ChainStreamInterceptor(i.Stream),
	}
}

func (i *Interceptor) requestContext(ctx context.Context, fullMethod string) (context.Context, klog.Logger) {
	id := i.nextID.Add(1)
	logger := i.logger.WithValues("rpc", path.Base(fullMethod), "requestID", strconv.FormatUint(id, 10))
	return klog.NewContext(ctx, logger), logger
}

// Unary is the unary server interceptor.
func (i *Interceptor) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	ctx, logger := i.requestContext(ctx, info.FullMethod)
	start := time.Now()
	if logger.V(5).Enabled() {
		logger.V(5).Info("Request", "request", req)
	}
	defer func() {
		if r := recover(); r != nil {
			logger.Error(fmt.Errorf("panic: %v", r), "RPC panicked", "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "internal error in %s: %v", path.Base(info.FullMethod), r)
		}
		err = toStatus(err)
		if err != nil {
			logger.V(2).Info("RPC failed", "duration", time.Since(start), "err", err)
		} else if logger.V(5).Enabled() {
			logger.V(5).Info("Response", "duration", time.Since(start), "response", resp)
		}
	}()
	if i.onChurn != nil && isChurn(path.Base(info.FullMethod)) {
		defer i.onChurn()
	}
	return handler(ctx, req)
}

// Stream is the streaming server interceptor.
func (i *Interceptor) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	ctx, logger := i.requestContext(ss.Context(), info.FullMethod)
	defer func() {
		if r := recover(); r != nil {
			logger.Error(fmt.Errorf("panic: %v", r), "RPC panicked", "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s: %v", path.Base(info.FullMethod), r)
		}
		err = toStatus(err)
		if err != nil {
			logger.V(2).Info("RPC failed", "err", err)
		}
	}()
	return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
