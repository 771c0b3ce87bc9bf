package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// Serve answers requests on l until ctx is done or a shutdown request has been answered.
// A closed connection (the daemon restarting) only ends that connection.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		_ = l.Close()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept on monitor socket: %w", err)
		}
		go s.serveConn(ctx, conn, cancel)
	}
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn, shutdown context.CancelFunc) {
	defer conn.Close()
	log := klog.FromContext(ctx)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	rd := bufio.NewReaderSize(conn, 4096)
	for {
		line, err := readLine(rd)
		if err != nil {
			return // the client went away; nothing of the pod depends on it
		}
		var req Request
		resp := Response{}
		if err := json.Unmarshal(line, &req); err != nil {
			resp = errorResponse(fmt.Errorf("decode request: %v: %w", err, ErrInvalid))
		} else if req.Op == opAttach {
			s.serveAttach(ctx, conn, rd, &req)
			s.activity()
			return
		} else {
			log.V(4).Info("Monitor request", "op", req.Op, "containerID", req.ID)
			resp = s.handle(ctx, &req)
		}
		if err := writeResponse(conn, resp); err != nil {
			return // the client went away (a Response always encodes)
		}
		s.activity()
		if req.Op == opShutdown && resp.Error == "" {
			shutdown()
			return
		}
	}
}

// readLine reads one request line, refusing lines over maxMessage.
func readLine(rd *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := rd.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxMessage {
			return nil, fmt.Errorf("request over %d bytes", maxMessage)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// handle dispatches one request.
func (s *Server) handle(ctx context.Context, req *Request) Response {
	var (
		st  ContainerState
		err error
	)
	switch req.Op {
	case opCreate:
		if req.Create == nil {
			return errorResponse(fmt.Errorf("create without options: %w", ErrInvalid))
		}
		st, err = s.Create(ctx, req.ID, *req.Create)
	case opStart:
		st, err = s.Start(ctx, req.ID)
	case opSignal:
		if req.Signal <= 0 || req.Signal > 64 {
			return errorResponse(fmt.Errorf("signal %d: %w", req.Signal, ErrInvalid))
		}
		st, err = s.Signal(ctx, req.ID, syscall.Signal(req.Signal))
	case opState:
		st, err = s.State(req.ID)
	case opList:
		return Response{States: s.List()}
	case opWait:
		st, err = s.Wait(req.ID, time.Duration(req.TimeoutMillis)*time.Millisecond)
	case opReopen:
		st, err = s.ReopenLog(req.ID)
	case opRemove:
		if err := s.Remove(ctx, req.ID); err != nil {
			return errorResponse(err)
		}
		return Response{}
	case opShutdown:
		s.KillAll(ctx, 10*time.Second)
		return Response{}
	default:
		return errorResponse(fmt.Errorf("operation %q: %w", req.Op, ErrInvalid))
	}
	if err != nil {
		r := errorResponse(err)
		if st.ID != "" {
			r.State = &st
		}
		return r
	}
	return Response{State: &st}
}
