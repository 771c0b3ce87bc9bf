package streaming

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-mini/cri-mini/pkg/config"
	"github.com/cri-mini/cri-mini/pkg/container"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// fakeExec writes "out:" and whatever stdin brings to stdout, "err" to stderr, and
// exits with code; it records what it was asked.
type fakeExec struct {
	code int32
	mu   sync.Mutex
	id   string
	cmd  []string
}

func (f *fakeExec) ExecStream(ctx context.Context, id string, cmd []string, s container.StreamIO) (int32, error) {
	f.mu.Lock()
	f.id, f.cmd = id, cmd
	f.mu.Unlock()
	if s.Stdout != nil {
		_, _ = io.WriteString(s.Stdout, "out:")
		if s.Stdin != nil {
			_, _ = io.Copy(s.Stdout, s.Stdin)
		}
	}
	if s.Stderr != nil {
		_, _ = io.WriteString(s.Stderr, "err")
	}
	return f.code, nil
}

func startTest(t *testing.T, o Options) *Server {
	t.Helper()
	tlsCert, tlsKey := o.Config.TLSCert, o.Config.TLSKey
	o.Config = config.Streaming{Address: "127.0.0.1:0", IdleTimeout: config.Duration(time.Minute), TLSCert: tlsCert, TLSKey: tlsKey}
	s, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background(), 5*time.Second); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// v5Session runs one exec over WebSocket v5, sending stdin and then closing it, and
// returns what arrived on each channel.
func v5Session(t *testing.T, url string, stdin string) map[byte]string {
	t.Helper()
	wsURL := strings.Replace(strings.Replace(url, "https://", "wss://", 1), "http://", "ws://", 1)
	cfg, err := websocket.NewConfig(wsURL, "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{v5Protocol}
	// The TLS test's certificate is self-signed.
	cfg.TlsConfig = &tls.Config{InsecureSkipVerify: true}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer ws.Close()
	if err := websocket.Message.Send(ws, append([]byte{chanStdin}, stdin...)); err != nil {
		t.Fatalf("send stdin: %v", err)
	}
	// v5's close message: the client's end of stdin.
	if err := websocket.Message.Send(ws, []byte{255, chanStdin}); err != nil {
		t.Fatalf("close stdin: %v", err)
	}
	got := map[byte]string{}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Logf("receive ended: %v", err)
			}
			return got
		}
		if len(msg) > 0 {
			got[msg[0]] += string(msg[1:])
		}
	}
}

func TestExecOverWebSocketV5(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int32
		status map[string]any
	}{
		{"success", 0, map[string]any{"status": "Success"}},
		{"exit code", 3, map[string]any{"status": "Failure", "reason": "NonZeroExitCode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeExec{code: tc.code}
			s := startTest(t, Options{Exec: f})
			resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			got := v5Session(t, resp.Url, "hi")
			if got[chanStdout] != "out:hi" || got[chanStderr] != "err" {
				t.Errorf("stdout %q, stderr %q; want %q, %q", got[chanStdout], got[chanStderr], "out:hi", "err")
			}
			var st map[string]any
			if err := json.Unmarshal([]byte(got[chanError]), &st); err != nil {
				t.Fatalf("status %q: %v", got[chanError], err)
			}
			for k, v := range tc.status {
				if st[k] != v {
					t.Errorf("status %s = %v, want %v (%s)", k, st[k], v, got[chanError])
				}
			}
			if tc.code != 0 && !strings.Contains(got[chanError], fmt.Sprintf(`"message":"%d"`, tc.code)) {
				t.Errorf("status %s does not carry exit code %d", got[chanError], tc.code)
			}
			if f.id != "c1" || len(f.cmd) != 1 || f.cmd[0] != "cat" {
				t.Errorf("exec got %q %q, want c1 [cat]", f.id, f.cmd)
			}
			// The URL was for one session only.
			r, err := http.Get(resp.Url)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != http.StatusNotFound {
				t.Errorf("second use of the URL: %s, want 404", r.Status)
			}
		})
	}
}

func TestSessionURLs(t *testing.T) {
	s := startTest(t, Options{Exec: &fakeExec{}})
	exec, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	pf, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url string
	}{
		{"unknown token", "http://" + s.Addr() + "/exec/nosuchtoken"},
		{"token of another kind", strings.Replace(pf.Url, "/portforward/", "/exec/", 1)},
		{"no token", "http://" + s.Addr() + "/exec"},
		{"extra path", exec.Url + "/more"},
	} {
		r, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("%s (%s): %s, want 404", tc.name, tc.url, r.Status)
		}
	}
	if !strings.HasPrefix(exec.Url, "http://"+s.Addr()+"/exec/") {
		t.Errorf("exec URL %s, want one on http://%s", exec.Url, s.Addr())
	}
}

func TestSessionsExpireAndBound(t *testing.T) {
	c := newSessions()
	req := &runtimeapi.ExecRequest{ContainerId: "c"}
	tok, err := c.insert(kindExec, req)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	s := c.m[tok]
	s.expires = time.Now().Add(-time.Second)
	c.m[tok] = s
	c.mu.Unlock()
	if _, ok := c.consume(kindExec, tok); ok {
		t.Error("an expired token was accepted")
	}
	for i := range maxSessions {
		if _, err := c.insert(kindAttach, req); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	if _, err := c.insert(kindAttach, req); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("insert over the bound: %v, want ErrUnavailable", err)
	}
}

func TestWriteV5Status(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"success", nil, `{"status":"Success"}`},
		{"internal", errors.New("boom"), `"reason":"InternalError"`},
	} {
		var b bytes.Buffer
		if err := writeV5Status(&b, tc.err); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%s: %s, want it to contain %s", tc.name, b.String(), tc.want)
		}
	}
}

func TestWantsProtocol(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    bool
	}{
		{"v5 among others", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-Websocket-Protocol": "v4.channel.k8s.io, v5.channel.k8s.io"}, true},
		{"v4 only", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-Websocket-Protocol": "v4.channel.k8s.io"}, false},
		{"SPDY", map[string]string{"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "Sec-Websocket-Protocol": "v5.channel.k8s.io"}, false},
	} {
		r, _ := http.NewRequest("GET", "http://127.0.0.1/exec/x", nil)
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		if got := wantsProtocol(r, v5Protocol); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "streaming-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestExecOverTLS(t *testing.T) {
	cert, key := selfSigned(t)
	s := startTest(t, Options{Exec: &fakeExec{}, Config: config.Streaming{TLSCert: cert, TLSKey: key}})
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Url, "https://") {
		t.Fatalf("URL %s, want https", resp.Url)
	}
	if got := v5Session(t, resp.Url, "tls"); got[chanStdout] != "out:tls" {
		t.Errorf("stdout over TLS %q, want %q", got[chanStdout], "out:tls")
	}
	// A missing key pair fails the start, naming the files.
	_, err = Start(context.Background(), Options{Config: config.Streaming{Address: "127.0.0.1:0",
		IdleTimeout: config.Duration(time.Minute), TLSCert: cert + ".missing", TLSKey: key}})
	if err == nil || !strings.Contains(err.Error(), ".missing") {
		t.Errorf("start with a missing certificate: %v", err)
	}
}

// blockingExec runs until its context ends and reports that it did.
type blockingExec struct {
	started, ended chan struct{}
}

func (b *blockingExec) ExecStream(ctx context.Context, _ string, _ []string, _ container.StreamIO) (int32, error) {
	close(b.started)
	<-ctx.Done()
	close(b.ended)
	return 0, ctx.Err()
}

// TestCloseEndsSessions: closing the server closes upgraded connections too, which ends
// their sessions' contexts (the exec'd processes are killed then).
func TestCloseEndsSessions(t *testing.T) {
	b := &blockingExec{started: make(chan struct{}), ended: make(chan struct{})}
	s, err := Start(context.Background(), Options{Exec: b,
		Config: config.Streaming{Address: "127.0.0.1:0", IdleTimeout: config.Duration(time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sleep"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig(strings.Replace(resp.Url, "http://", "ws://", 1), "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{v5Protocol}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	select {
	case <-b.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the exec did not start")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background(), 10*time.Second) }()
	select {
	case <-b.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the server did not end the session")
	}
	if err := <-closed; err != nil {
		t.Errorf("close: %v", err)
	}
}
