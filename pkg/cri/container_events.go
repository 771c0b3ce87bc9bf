package cri

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// GetContainerEvents streams one event per lifecycle change of a container or pod sandbox
// from the moment of the call until the caller goes away. The response headers are sent
// once the caller is subscribed: a client that waits for them misses nothing made after.
// A caller that falls behind by more than the buffer is ended with ResourceExhausted
// (after the events it was still owed) and may call again: runtime operations never wait
// for it.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	sub, cancel := s.events.subscribe()
	defer cancel()
	ctx := stream.Context()
	logger := klog.FromContext(ctx)
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return fmt.Errorf("send container events header: %w", err)
	}
	logger.V(2).Info("Container events subscriber joined")
	for {
		select {
		case <-ctx.Done():
			logger.V(2).Info("Container events subscriber left")
			return nil
		case resp := <-sub.events:
			if err := stream.Send(resp); err != nil {
				return fmt.Errorf("send container event: %w", err)
			}
		case <-sub.lagged:
			if err := drain(sub, stream); err != nil {
				return err
			}
			logger.Info("Ending a container events subscriber that fell behind", "buffer", s.events.buffer)
			return status.Errorf(codes.ResourceExhausted, "container events subscriber fell behind by more than %d events; events were lost, subscribe again", s.events.buffer)
		}
	}
}

// drain sends what a dropped subscriber's queue still holds: everything before the first
// lost event.
func drain(sub *subscription, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	for {
		select {
		case resp := <-sub.events:
			if err := stream.Send(resp); err != nil {
				return fmt.Errorf("send container event: %w", err)
			}
		default:
			return nil
		}
	}
}
