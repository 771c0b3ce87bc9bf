package main

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

const (
	// busybox httpd prints nothing when it starts; the wrapper's first line
	// names httpd as Apache's first log line does, which the multi-container
	// log spec waits for.
	httpdForeground = `#!/bin/sh
echo "httpd: busybox httpd serving /usr/local/apache2/htdocs on port 80"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
`
	httpdIndex = "<html><body><h1>It works!</h1></body></html>\n"

	// What `adduser -u 1000 -D default-user && addgroup -g 50000
	// group-defined-in-image && addgroup default-user group-defined-in-image`
	// adds in upstream's image.
	predefinedPasswd = "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"
	predefinedGroup  = "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"
)

// buildLayers assembles and compresses every layer the images share.
func buildLayers(ctx context.Context, pool *imagebuild.Tree) (layers, error) {
	var ls layers
	base, err := baseTree(ctx, pool)
	if err != nil {
		return ls, err
	}
	nginx, err := nginxTree(pool, base)
	if err != nil {
		return ls, err
	}
	hostnet, err := fileLayer(map[string]string{"/etc/nginx/conf.d/default.conf": nginxServer(12003)}, nil)
	if err != nil {
		return ls, err
	}
	httpd, err := fileLayer(map[string]string{
		"/usr/local/apache2/htdocs/index.html": httpdIndex,
		"/usr/local/bin/httpd-foreground":      httpdForeground,
	}, map[string]int64{"/usr/local/bin/httpd-foreground": 0o755})
	if err != nil {
		return ls, err
	}
	nnpSource, err := sources.ReadFile("nnp/main.go")
	if err != nil {
		return ls, fmt.Errorf("read nnp source: %w", err)
	}
	nnpBinary, err := buildNNP(ctx, nnpSource)
	if err != nil {
		return ls, err
	}
	nnp := imagebuild.NewTree()
	// Setuid root is the point of the image: with no_new_privs unset, the
	// program runs with euid 0 whatever user starts it.
	if err := nnp.AddFile("/usr/local/bin/nnp", nnpBinary, 0o4755, 0, 0); err != nil {
		return ls, err
	}
	group, err := predefinedGroupTree(base)
	if err != nil {
		return ls, err
	}

	trees := []struct {
		tree *imagebuild.Tree
		dst  *v1.Layer
		name string
	}{
		{base, &ls.base, "base"}, {nginx, &ls.nginx, "nginx"}, {hostnet, &ls.hostnet, "hostnet"},
		{httpd, &ls.httpd, "httpd"}, {nnp, &ls.nnp, "nonewprivs"}, {group, &ls.predefinedGroup, "predefined-group"},
	}
	for _, t := range trees {
		l, err := t.tree.Layer()
		if err != nil {
			return ls, fmt.Errorf("%s layer: %w", t.name, err)
		}
		*t.dst = l
	}
	ls.marker = func(name string) (v1.Layer, error) {
		t := imagebuild.NewTree()
		if err := t.AddFile("/"+name, nil, 0o644, 0, 0); err != nil {
			return nil, err
		}
		return t.Layer()
	}
	return ls, nil
}

// predefinedGroupTree overrides /etc/passwd and /etc/group of base with a
// user 1000 that belongs to group 50000 in the image only.
func predefinedGroupTree(base *imagebuild.Tree) (*imagebuild.Tree, error) {
	t := imagebuild.NewTree()
	for _, f := range []struct{ path, add string }{
		{"/etc/passwd", predefinedPasswd},
		{"/etc/group", predefinedGroup},
	} {
		e := base.Get(f.path)
		if e == nil || e.Kind != imagebuild.KindFile {
			return nil, fmt.Errorf("base has no %s", f.path)
		}
		data := append(append([]byte(nil), e.Inode.Data...), f.add...)
		if err := t.AddFile(f.path, data, 0o644, 0, 0); err != nil {
			return nil, err
		}
	}
	if err := t.AddDir("/home/default-user", 0o755, 1000, 1000); err != nil {
		return nil, err
	}
	return t, nil
}
