package streaming

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/store"
)

const (
	// sessionTTL is how long a URL handed out by Exec/Attach/PortForward stays valid
	// unused, as kubelet's streaming server has it.
	sessionTTL = time.Minute
	// maxSessions bounds the URLs handed out and not used yet.
	maxSessions = 1000
)

// Session kinds, which are also the first element of their URL paths.
const (
	kindExec        = "exec"
	kindAttach      = "attach"
	kindPortForward = "portforward"
)

// sessions are the one-shot URLs handed out by the RPCs. They are kept here rather than
// in cri-streaming's own cache because some clients are served here (WebSocket v5 and
// SPDY tunnelled over WebSocket, which cri-streaming does not speak); the others get a
// cri-streaming URL minted when they connect.
type sessions struct {
	mu sync.Mutex
	m  map[string]session
}

type session struct {
	kind    string
	req     proto.Message
	expires time.Time
}

func newSessions() *sessions { return &sessions{m: map[string]session{}} }

// insert stores req and returns its token.
func (c *sessions) insert(kind string, req proto.Message) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("streaming: token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, s := range c.m {
		if now.After(s.expires) {
			delete(c.m, t)
		}
	}
	if len(c.m) >= maxSessions {
		return "", fmt.Errorf("streaming: %d sessions wait for their clients: %w", len(c.m), store.ErrUnavailable)
	}
	c.m[token] = session{kind: kind, req: proto.Clone(req), expires: now.Add(sessionTTL)}
	return token, nil
}

// consume returns and forgets the request of a live token of the given kind.
func (c *sessions) consume(kind, token string) (proto.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[token]
	if !ok || s.kind != kind {
		return nil, false
	}
	delete(c.m, token)
	if time.Now().After(s.expires) {
		return nil, false
	}
	return s.req, true
}

// url is the address of a session.
func (s *Server) url(kind, token string) string {
	u := url.URL{Scheme: "http", Host: s.addr, Path: "/" + kind + "/" + token}
	if s.tls {
		u.Scheme = "https"
	}
	return u.String()
}

// GetExec returns the URL of a one-shot exec session.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	token, err := s.sessions.insert(kindExec, req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecResponse{Url: s.url(kindExec, token)}, nil
}

// GetAttach returns the URL of a one-shot attach session.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	token, err := s.sessions.insert(kindAttach, req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.AttachResponse{Url: s.url(kindAttach, token)}, nil
}

// GetPortForward returns the URL of a one-shot port-forward session.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	token, err := s.sessions.insert(kindPortForward, req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PortForwardResponse{Url: s.url(kindPortForward, token)}, nil
}

// ServeHTTP serves a session URL: WebSocket v5 exec/attach and tunnelled port-forward
// here, everything else (SPDY, WebSocket v1-v4) through cri-streaming under a URL of
// its own minted now.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, token, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || strings.Contains(token, "/") {
		http.NotFound(w, r)
		return
	}
	req, ok := s.sessions.consume(kind, token)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch req := req.(type) {
	case *runtimeapi.ExecRequest:
		if wantsProtocol(r, v5Protocol) {
			s.serveV5(w, r, req.GetContainerId(), req.GetCmd(), streamOpts{req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()})
			return
		}
		s.serveCRI(w, r, func() (string, error) { resp, err := s.cri.GetExec(req); return resp.GetUrl(), err })
	case *runtimeapi.AttachRequest:
		if wantsProtocol(r, v5Protocol) {
			s.serveV5(w, r, req.GetContainerId(), nil, streamOpts{req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()})
			return
		}
		s.serveCRI(w, r, func() (string, error) { resp, err := s.cri.GetAttach(req); return resp.GetUrl(), err })
	case *runtimeapi.PortForwardRequest:
		if wantsProtocol(r, tunnelPortForwardProtocol) {
			s.serveTunnel(w, r, req)
			return
		}
		s.serveCRI(w, r, func() (string, error) { resp, err := s.cri.GetPortForward(req); return resp.GetUrl(), err })
	default:
		http.NotFound(w, r)
	}
}

// serveCRI hands the request to cri-streaming under the URL mint returns.
func (s *Server) serveCRI(w http.ResponseWriter, r *http.Request, mint func() (string, error)) {
	raw, err := mint()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	path, err := urlPath(raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.URL.Path = path
	r.URL.RawPath = ""
	s.cri.ServeHTTP(w, r)
}
