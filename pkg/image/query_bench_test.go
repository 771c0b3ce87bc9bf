package image

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BenchmarkQuery measures what ImageStatus and ListImages ask of the index, with a handful of
// images as on a small node.
func BenchmarkQuery(b *testing.B) {
	reg := newTestRegistry(b)
	s := newTestService(b, nil)
	ctx := context.Background()
	var id string
	for i := range 5 {
		img := imageOf(b, v1.Config{Env: []string{fmt.Sprintf("N=%d", i)}}, layerOf(b, compression.GZip, regFile("a", "a")))
		reg.push(b, fmt.Sprintf("bench/img%d:latest", i), img)
		got, err := s.Pull(ctx, fmt.Sprintf("%s/bench/img%d", reg.host, i), nil)
		if err != nil {
			b.Fatal(err)
		}
		id = got.ID
	}
	for name, ref := range map[string]string{
		"canonical": reg.host + "/bench/img3:latest",
		"untagged":  reg.host + "/bench/img3",
		"id":        id,
		"missing":   reg.host + "/bench/none:v1",
	} {
		b.Run("Get/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ref); (err == nil) == (name == "missing") {
					b.Fatalf("Get(%s): %v", ref, err)
				}
			}
		})
	}
	b.Run("List", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(s.List("")) != 5 {
				b.Fatal("want 5 images")
			}
		}
	})
}
