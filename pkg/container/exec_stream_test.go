package container

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// failingWriter is a client that stopped taking output.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

// erroringReader returns data, then a read error of its own.
type erroringReader struct {
	data string
	err  error
	done bool
}

func (r *erroringReader) Read(p []byte) (int, error) {
	if !r.done {
		r.done = true
		return copy(p, r.data), nil
	}
	return 0, r.err
}

func TestCopyToClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dst      io.Writer
		src      io.Reader
		wantGone bool
	}{
		{"output ends", io.Discard, strings.NewReader("abc"), false},
		{"terminal closed (EIO)", io.Discard, &erroringReader{data: "x", err: unix.EIO}, false},
		{"client gone", failingWriter{}, strings.NewReader("abc"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			copyToClient(tc.dst, tc.src, cancel)
			if gone := ctx.Err() != nil; gone != tc.wantGone {
				t.Errorf("client gone %v, want %v", gone, tc.wantGone)
			}
		})
	}
}
