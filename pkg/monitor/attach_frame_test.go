package monitor

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestAttachFrames(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, maxFrame)
	for _, tc := range []struct {
		name    string
		in      []byte
		kind    byte
		payload []byte
		wantErr error
	}{
		{"stdin", appendFrame(nil, frameStdin, []byte("hello")), frameStdin, []byte("hello"), nil},
		{"empty end", appendFrame(nil, frameEnd, nil), frameEnd, []byte{}, nil},
		{"largest", appendFrame(nil, frameStdout, big), frameStdout, big, nil},
		{"resize", appendFrame(nil, frameResize, encodeResize(80, 24)), frameResize, encodeResize(80, 24), nil},
		{"over the limit", []byte{frameStdin, 0, 0, 0x80, 1}, 0, nil, ErrInvalid},
		{"no header", nil, 0, nil, io.EOF},
		{"short header", []byte{frameStdin, 0}, 0, nil, io.ErrUnexpectedEOF},
		{"short payload", []byte{frameStdin, 0, 0, 0, 4, 'a'}, 0, nil, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, p, err := readFrame(bytes.NewReader(tc.in), make([]byte, 0, 16))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("readFrame = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (kind != tc.kind || !bytes.Equal(p, tc.payload)) {
				t.Errorf("frame %d %q, want %d %q", kind, p, tc.kind, tc.payload)
			}
		})
	}
	w, h, err := decodeResize(encodeResize(211, 63))
	if err != nil || w != 211 || h != 63 {
		t.Errorf("resize round trip: %d x %d, %v", w, h, err)
	}
	if _, _, err := decodeResize([]byte{1, 2, 3}); !errors.Is(err, ErrInvalid) {
		t.Errorf("short resize: %v, want ErrInvalid", err)
	}
}
