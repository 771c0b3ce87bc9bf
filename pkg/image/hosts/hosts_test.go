package hosts

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHosts(t *testing.T) {
	dir := t.TempDir()
	write := func(host, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docker.io", `
server = "https://registry-1.docker.io"

[host."http://mirror-b.local:5000/prefix"]
  capabilities = ["pull"]

[host."https://mirror-a.local"]
  capabilities = ["pull", "resolve"]
  skip_verify = true

[host.'https://exact.local/custom/path']
  override_path = true
  [host.'https://exact.local/custom/path'.header]
    x-custom = "1"
`)
	write("_default", `
[host."http://127.0.0.1:1234"]
`)
	r := NewResolver(dir)
	defer r.Close()
	tests := []struct {
		registry string
		want     []string // URL + capabilities
	}{
		{"docker.io", []string{
			"http://mirror-b.local:5000/prefix/v2 [pull] mirror",
			"https://mirror-a.local/v2 [pull resolve] mirror",
			"https://exact.local/custom/path [pull resolve] mirror",
			"https://registry-1.docker.io/v2 [pull resolve push] server",
		}},
		{"registry.k8s.io", []string{
			"http://127.0.0.1:1234/v2 [pull resolve] mirror",
			"https://registry.k8s.io/v2 [pull resolve push] server",
		}},
	}
	for _, tc := range tests {
		hs, err := r.Hosts(tc.registry)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range hs {
			kind := "server"
			if h.Mirror {
				kind = "mirror"
			}
			got = append(got, h.URL.String()+" ["+strings.Join(h.Capabilities, " ")+"] "+kind)
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.registry, got, tc.want)
		}
	}

	none := NewResolver("")
	hs, err := none.Hosts("localhost:5000")
	if err != nil || len(hs) != 1 || hs[0].URL.String() != "http://localhost:5000/v2" {
		t.Fatalf("default localhost host = %v, %v", hs, err)
	}

	bad := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bad, "x.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bad, "x.io", "hosts.toml"), []byte("server = [1"), 0o644)
	if _, err := NewResolver(bad).Hosts("x.io"); err == nil {
		t.Fatal("broken hosts.toml accepted")
	}
}

func TestRewrite(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.RequestURI()+" "+r.Header.Get("X-Custom"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "gcr.io"), 0o755)
	os.WriteFile(filepath.Join(dir, "gcr.io", "hosts.toml"), []byte(`
[host."`+srv.URL+`/mirror"]
  header = { x-custom = "yes" }
[host."`+srv.URL+`/exact"]
  override_path = true
`), 0o644)
	hs, err := NewResolver(dir).Hosts("gcr.io")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs[:2] {
		c := &http.Client{Transport: h.RoundTripper("gcr.io", "gcr.io")}
		for _, u := range []string{"https://gcr.io/v2/", "https://gcr.io/v2/a/b/manifests/latest"} {
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	want := []string{
		"/mirror/v2/?ns=gcr.io yes",
		"/mirror/v2/a/b/manifests/latest?ns=gcr.io yes",
		"/exact/?ns=gcr.io ",
		"/exact/a/b/manifests/latest?ns=gcr.io ",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%q\nwant\n%q", seen, want)
	}
}
