package hosts

import (
	"net/http"
	"strings"
)

// RoundTripper returns a transport that sends requests addressed to apiHost (the registry host
// the registry client puts in URLs, e.g. "index.docker.io") to this endpoint: scheme and host are
// replaced and the "/v2" prefix of the path becomes the endpoint's path. Other hosts (token
// realms on another host) pass through unchanged. For mirrors the upstream registry is added as
// the "ns" query parameter, as containerd does, so one mirror can serve several registries.
func (h Host) RoundTripper(apiHost, upstream string) http.RoundTripper {
	return &rewriter{from: apiHost, h: h, ns: upstream}
}

type rewriter struct {
	from string
	h    Host
	ns   string
}

func (r *rewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != r.from {
		return r.h.base.RoundTrip(req)
	}
	out := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host = r.h.URL.Scheme, r.h.URL.Host
	if p := req.URL.Path; p == "/v2" || strings.HasPrefix(p, "/v2/") {
		u.Path = strings.TrimSuffix(r.h.URL.Path, "/") + strings.TrimPrefix(p, "/v2")
		if u.Path == "" {
			u.Path = "/"
		}
		u.RawPath = ""
	}
	if r.h.Mirror && r.ns != "" {
		q := u.Query()
		q.Set("ns", r.ns)
		u.RawQuery = q.Encode()
	}
	out.URL = &u
	out.Host = u.Host
	for k, v := range r.h.Header {
		out.Header[k] = append([]string(nil), v...)
	}
	return r.h.base.RoundTrip(out)
}
