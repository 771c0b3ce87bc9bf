package main

import (
	"context"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

// fakeLayers stands in for the Debian-built layers: each is one small file,
// distinct from the others.
func fakeLayers(t *testing.T) layers {
	t.Helper()
	mk := func(name string) v1.Layer {
		tr := imagebuild.NewTree()
		if err := tr.AddFile("/"+name, []byte(name), 0o644, 0, 0); err != nil {
			t.Fatal(err)
		}
		l, err := tr.Layer()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	return layers{
		base: mk("base"), nginx: mk("nginx"), hostnet: mk("hostnet"), httpd: mk("httpd"),
		nnp: mk("nnp"), predefinedGroup: mk("group"),
		marker: func(name string) (v1.Layer, error) { return mk("marker-" + name), nil },
	}
}

func TestRecipes(t *testing.T) {
	items, err := buildAll(context.Background(), fakeLayers(t))
	if err != nil {
		t.Fatal(err)
	}
	digest := map[string]v1.Hash{}
	kind := map[string]string{}
	for _, it := range items {
		if _, dup := digest[it.Ref]; dup {
			t.Fatalf("reference %s built twice", it.Ref)
		}
		if digest[it.Ref], err = it.Item.Digest(); err != nil {
			t.Fatal(err)
		}
		kind[it.Ref] = itemKind(it.Item)
	}
	// Every image critest v1.34.0 pulls, by the reference it uses (":latest"
	// added where it gives none), with the manifest kind served for it.
	want := map[string]string{
		e2ePrefix + "busybox:1.29-2":                             "application/vnd.docker.distribution.manifest.list.v2+json",
		e2ePrefix + "nginx:1.14-2":                               "application/vnd.docker.distribution.manifest.list.v2+json",
		e2ePrefix + "httpd:2.4.39-4":                             "application/vnd.docker.distribution.manifest.list.v2+json",
		e2ePrefix + "nonewprivs:1.3":                             "application/vnd.docker.distribution.manifest.list.v2+json",
		criToolsPrefix + "hostnet-nginx-amd64:latest":            "application/vnd.docker.distribution.manifest.v2+json",
		"docker.io/library/busybox:latest":                       "application/vnd.oci.image.manifest.v1+json",
		criToolsPrefix + "test-image-latest:latest":              "application/vnd.oci.image.index.v1+json",
		criToolsPrefix + "test-image-tag:test":                   "application/vnd.oci.image.index.v1+json",
		criToolsPrefix + "test-image-tag:all":                    "application/vnd.oci.image.index.v1+json",
		criToolsPrefix + "test-image-user-uid:latest":            "application/vnd.oci.image.index.v1+json",
		criToolsPrefix + "test-image-user-username:latest":       "application/vnd.oci.image.index.v1+json",
		criToolsPrefix + "test-image-user-uid-group:latest":      "application/vnd.oci.image.index.v1+json",
		criToolsPrefix + "test-image-user-username-group:latest": "application/vnd.oci.image.index.v1+json",
		criToolsPrefix + "test-image-predefined-group:latest":    "application/vnd.oci.image.index.v1+json",
		ecrBusybox + "1.35.0-glibc":                              "application/vnd.oci.image.index.v1+json",
		ecrBusybox + "1-uclibc":                                  "application/vnd.oci.image.index.v1+json",
		ecrBusybox + "1":                                         "application/vnd.oci.image.index.v1+json",
		ecrBusybox + "1-glibc":                                   "application/vnd.oci.image.index.v1+json",
		ecrBusybox + "1-musl":                                    "application/vnd.oci.image.index.v1+json",
	}
	for ref, k := range want {
		if kind[ref] != k {
			t.Errorf("%s: kind %q, want %q", ref, kind[ref], k)
		}
	}

	tests := []struct {
		name string
		refs []string
		same bool
	}{
		{"different tags, different images", []string{criToolsPrefix + "test-image-1:latest", criToolsPrefix + "test-image-2:latest", criToolsPrefix + "test-image-3:latest"}, false},
		{"different tags, same image", []string{criToolsPrefix + "test-image-tags:1", criToolsPrefix + "test-image-tags:2", criToolsPrefix + "test-image-tags:3"}, true},
		{"tag test and tag all differ", []string{criToolsPrefix + "test-image-tag:test", criToolsPrefix + "test-image-tag:all"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[v1.Hash]bool{}
			for _, r := range tc.refs {
				d, ok := digest[r]
				if !ok {
					t.Fatalf("%s not built", r)
				}
				seen[d] = true
			}
			if tc.same && len(seen) != 1 {
				t.Errorf("want one image, got %d digests", len(seen))
			}
			if !tc.same && len(seen) != len(tc.refs) {
				t.Errorf("want %d distinct images, got %d", len(tc.refs), len(seen))
			}
		})
	}
}

func TestPredefinedGroupTree(t *testing.T) {
	base := imagebuild.NewTree()
	for p, c := range map[string]string{"/etc/passwd": passwdFile, "/etc/group": groupFile} {
		if err := base.AddFile(p, []byte(c), 0o644, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := predefinedGroupTree(base)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{"/etc/passwd", passwdFile + predefinedPasswd},
		{"/etc/group", groupFile + predefinedGroup},
	}
	for _, tc := range tests {
		e := tr.Get(tc.path)
		if e == nil || string(e.Inode.Data) != tc.want {
			t.Errorf("%s does not hold the base content plus the image's user and group", tc.path)
		}
	}
	if h := tr.Get("/home/default-user"); h == nil || h.UID != 1000 || h.GID != 1000 {
		t.Errorf("home of default-user missing or not owned by 1000:1000: %+v", h)
	}
	if _, err := predefinedGroupTree(imagebuild.NewTree()); err == nil {
		t.Error("a base without /etc/passwd was accepted")
	}
}
