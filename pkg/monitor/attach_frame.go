package monitor

import (
	"encoding/binary"
	"fmt"
	"io"
)

// After an attach request has been answered, both directions of the connection carry
// frames: one byte of frame kind, a 4-byte big-endian payload length, the payload.
//
// Monitor → client: frameStdout and frameStderr (the container's output; with a tty
// everything is stdout), then one frameEnd when the container's output has ended, after
// which the monitor closes the connection.
// Client → monitor: frameStdin (bytes for the container's stdin), frameStdinClose (the
// client's stdin ended), frameResize (width and height, two big-endian uint16).
const (
	frameStdin      byte = 0
	frameStdout     byte = 1
	frameStderr     byte = 2
	frameResize     byte = 3
	frameStdinClose byte = 4
	frameEnd        byte = 5
)

const frameHeader = 5

// maxFrame bounds one frame's payload; longer stdin is split by the client, and output
// chunks are at most a copier's read buffer.
const maxFrame = 32 << 10

// appendFrame appends one encoded frame to b.
func appendFrame(b []byte, kind byte, payload []byte) []byte {
	b = append(b, kind, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(payload)))
	return append(b, payload...)
}

// readFrame reads one frame into buf (grown as needed) and returns its kind and payload,
// which is only valid until the next call.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach frame of %d bytes, limit %d: %w", n, maxFrame, ErrInvalid)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("attach frame: %w", io.ErrUnexpectedEOF)
	}
	return h[0], buf, nil
}

// encodeResize is the payload of a frameResize.
func encodeResize(width, height uint16) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], width)
	binary.BigEndian.PutUint16(p[2:], height)
	return p[:]
}

func decodeResize(p []byte) (width, height uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize frame of %d bytes: %w", len(p), ErrInvalid)
	}
	return binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:]), nil
}
