package main

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

// packages are the Debian packages every file of the images comes from: the
// programs and, transitively, the libraries they link.
var packages = []string{
	"busybox", "libc6",
	"procps", "libproc2-0", "libsystemd0", "libcap2", "libgcrypt20", "libgpg-error0",
	"liblz4-1", "liblzma5", "libzstd1",
	"util-linux",
	"nginx", "nginx-common", "libcrypt1", "libpcre2-8-0", "libssl3", "zlib1g",
}

const (
	e2ePrefix      = "registry.k8s.io/e2e-test-images/"
	criToolsPrefix = "gcr.io/k8s-staging-cri-tools/"
	ecrBusybox     = "public.ecr.aws/docker/library/busybox:"

	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// layers holds the built layers shared between images.
type layers struct {
	base, nginx, hostnet, httpd, nnp, predefinedGroup v1.Layer
	marker                                            func(name string) (v1.Layer, error)
}

// recipe is one image and every reference it is published under.
type recipe struct {
	refs   []string
	extra  []imagebuild.LayerSpec
	config v1.Config
	kind   imagebuild.ManifestKind
}

func sh(cfg v1.Config) v1.Config {
	cfg.Env = []string{defaultPath}
	if cfg.Cmd == nil && cfg.Entrypoint == nil {
		cfg.Cmd = []string{"sh"}
	}
	return cfg
}

// recipes lists the images critest v1.34.0 pulls (pkg/validate,
// pkg/framework, pkg/benchmark) plus docker.io/library/busybox:latest for
// testing short-name normalisation by hand. The registry.k8s.io images are
// Docker manifest lists as upstream, the gcr.io and public.ecr.aws ones OCI
// indexes; hostnet-nginx-amd64 is a bare Docker manifest (upstream pushes the
// per-architecture image itself) and docker.io/library/busybox a bare OCI
// manifest, so all four shapes are served.
//
// Not built: gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...,
// pulled by a digest that only the upstream bytes have.
func recipes(ls layers) ([]recipe, error) {
	marker := func(name string) ([]imagebuild.LayerSpec, error) {
		l, err := ls.marker(name)
		if err != nil {
			return nil, err
		}
		return []imagebuild.LayerSpec{{Layer: l, CreatedBy: "ADD " + name + " /" + name}}, nil
	}
	var out []recipe
	add := func(r recipe) { out = append(out, r) }

	add(recipe{refs: []string{e2ePrefix + "busybox:1.29-2"}, config: sh(v1.Config{}), kind: imagebuild.DockerManifestList})
	add(recipe{refs: []string{"docker.io/library/busybox:latest"}, config: sh(v1.Config{}), kind: imagebuild.OCIManifest})
	nginxCfg := v1.Config{
		Cmd:          []string{"nginx", "-g", "daemon off;"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
	}
	add(recipe{
		refs:   []string{e2ePrefix + "nginx:1.14-2"},
		extra:  []imagebuild.LayerSpec{{Layer: ls.nginx, CreatedBy: "nginx from Debian's nginx package"}},
		config: sh(nginxCfg),
		kind:   imagebuild.DockerManifestList,
	})
	hostnetCfg := nginxCfg
	hostnetCfg.ExposedPorts = map[string]struct{}{"12003/tcp": {}}
	// As the upstream image (from nginx:1.25), stop with SIGQUIT, nginx's
	// graceful shutdown.
	hostnetCfg.StopSignal = "SIGQUIT"
	add(recipe{
		refs: []string{criToolsPrefix + "hostnet-nginx-amd64:latest"},
		extra: []imagebuild.LayerSpec{
			{Layer: ls.nginx, CreatedBy: "nginx from Debian's nginx package"},
			{Layer: ls.hostnet, CreatedBy: "COPY default.conf /etc/nginx/conf.d/default.conf (listen 12003)"},
		},
		config: sh(hostnetCfg),
		kind:   imagebuild.DockerManifest,
	})
	add(recipe{
		refs:   []string{e2ePrefix + "httpd:2.4.39-4"},
		extra:  []imagebuild.LayerSpec{{Layer: ls.httpd, CreatedBy: "busybox httpd serving /usr/local/apache2/htdocs"}},
		config: sh(v1.Config{Cmd: []string{"httpd-foreground"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}}),
		kind:   imagebuild.DockerManifestList,
	})
	add(recipe{
		refs:   []string{e2ePrefix + "nonewprivs:1.3"},
		extra:  []imagebuild.LayerSpec{{Layer: ls.nnp, CreatedBy: "COPY nnp /usr/local/bin/nnp; chmod 04755"}},
		config: sh(v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}}),
		kind:   imagebuild.DockerManifestList,
	})

	// Images that differ only by a marker file, as upstream's image-test.
	markers := []struct {
		file string
		refs []string
	}{
		{"test-image-1", []string{criToolsPrefix + "test-image-1:latest"}},
		{"test-image-2", []string{criToolsPrefix + "test-image-2:latest"}},
		{"test-image-3", []string{criToolsPrefix + "test-image-3:latest"}},
		{"test-image-latest", []string{criToolsPrefix + "test-image-latest:latest"}},
		{"same-image", []string{criToolsPrefix + "test-image-tags:1", criToolsPrefix + "test-image-tags:2", criToolsPrefix + "test-image-tags:3"}},
		{"test", []string{criToolsPrefix + "test-image-tag:test"}},
		{"all", []string{criToolsPrefix + "test-image-tag:all"}},
		// Benchmark images: distinct images, two tags sharing one.
		{"busybox-glibc", []string{ecrBusybox + "1", ecrBusybox + "1-glibc"}},
		{"busybox-1.35.0-glibc", []string{ecrBusybox + "1.35.0-glibc"}},
		{"busybox-uclibc", []string{ecrBusybox + "1-uclibc"}},
		{"busybox-musl", []string{ecrBusybox + "1-musl"}},
	}
	for _, m := range markers {
		extra, err := marker(m.file)
		if err != nil {
			return nil, err
		}
		add(recipe{refs: m.refs, extra: extra, config: sh(v1.Config{}), kind: imagebuild.OCIIndex})
	}

	// Image users, as upstream's image-user (USER only, no passwd change).
	for _, u := range []struct{ name, user string }{
		{"test-image-user-uid", "1002"},
		{"test-image-user-username", "www-data"},
		{"test-image-user-uid-group", "1003:1004"},
		{"test-image-user-username-group", "www-data:1004"},
	} {
		add(recipe{refs: []string{criToolsPrefix + u.name + ":latest"}, config: sh(v1.Config{User: u.user}), kind: imagebuild.OCIIndex})
	}
	add(recipe{
		refs:   []string{criToolsPrefix + "test-image-predefined-group:latest"},
		extra:  []imagebuild.LayerSpec{{Layer: ls.predefinedGroup, CreatedBy: "adduser -u 1000 default-user; addgroup -g 50000 group-defined-in-image"}},
		config: sh(v1.Config{User: "1000"}),
		kind:   imagebuild.OCIIndex,
	})
	return out, nil
}

// buildAll builds every recipe on top of the base layer.
func buildAll(ctx context.Context, ls layers) ([]imagebuild.Tagged, error) {
	rs, err := recipes(ls)
	if err != nil {
		return nil, err
	}
	var out []imagebuild.Tagged
	for _, r := range rs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		spec := imagebuild.ImageSpec{
			Layers: append([]imagebuild.LayerSpec{{Layer: ls.base, CreatedBy: "busybox base from Debian packages"}}, r.extra...),
			Config: r.config,
			Kind:   r.kind,
		}
		item, err := imagebuild.Build(spec)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", r.refs[0], err)
		}
		for _, ref := range r.refs {
			out = append(out, imagebuild.Tagged{Ref: ref, Item: item})
		}
	}
	return out, nil
}

// itemKind describes a built item for the report.
func itemKind(item mutate.Appendable) string {
	mt, err := item.MediaType()
	if err != nil {
		return "unknown"
	}
	return string(mt)
}
