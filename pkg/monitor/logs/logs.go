// Package logs writes container output in the CRI log format that kubelet reads:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n
//
// F marks the end of a line of the container's output, P a piece of a line that continues in
// the next record of the same stream (a line over MaxLineSize, or output that ended without a
// newline). kubelet's reader (k8s.io/cri-client/pkg/logs) joins P pieces and strips the record
// newline of a P record, so the container's bytes are reproduced exactly.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// MaxLineSize is the longest content of one record; longer lines are split into P records.
// 16 KiB is what containerd and CRI-O use, and what log shippers expect.
const MaxLineSize = 16 * 1024

// Stream names as they appear in a record.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

const (
	tagFull    = 'F'
	tagPartial = 'P'
)

// ErrClosed is returned by writes to a closed log file.
var ErrClosed = errors.New("log file closed")

// File is one container log file shared by the container's output streams. Every batch of
// records is written with one write(2) under a mutex on an O_APPEND descriptor, so records
// of two streams never interleave inside a line.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
	buf  []byte // reused record buffer; guarded by mu
	now  func() time.Time
}

// Open opens (creating it if needed) the log file at path for appending.
func Open(path string) (*File, error) {
	f, err := openLog(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f, now: time.Now}, nil
}

func openLog(path string) (*os.File, error) {
	// 0640: logs can hold secrets a container printed; kubelet reads them as root.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log %s: %w", path, err)
	}
	return f, nil
}

// Reopen opens the path anew and switches to it. kubelet rotates a log by renaming the file
// and then asking for a reopen: records written before the switch land in the renamed file,
// records after it in the new one, and none is lost or written twice because the switch and
// every write hold the same mutex. On error the old file stays in use.
func (l *File) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrClosed
	}
	nf, err := openLog(l.path)
	if err != nil {
		return err
	}
	old := l.f
	l.f = nf
	if err := old.Close(); err != nil {
		return fmt.Errorf("close previous container log %s: %w", l.path, err)
	}
	return nil
}

// Close closes the file; later writes fail with ErrClosed.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("close container log %s: %w", l.path, err)
	}
	return nil
}

// NewStream returns a writer for one output stream of the container (Stdout or Stderr; with a
// tty both are Stdout, as the CRI requires). The writer is not safe for concurrent use by
// itself: each stream has one reader copying into it.
func (l *File) NewStream(name string) *Stream {
	return &Stream{file: l, name: name}
}

// appendRecord appends one record to buf.
func appendRecord(buf []byte, ts time.Time, stream string, tag byte, content []byte) []byte {
	buf = ts.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, stream...)
	buf = append(buf, ' ', tag, ' ')
	buf = append(buf, content...)
	return append(buf, '\n')
}

// writeRecords formats lead as P records, then the complete lines in lines (each ending in
// '\n', at most MaxLineSize bytes of content each) as F records, then trail as P records, and
// writes them all with one write(2).
func (l *File) writeRecords(stream string, lead, lines, trail []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrClosed
	}
	ts := l.now().UTC()
	buf := appendPieces(l.buf[:0], ts, stream, lead)
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		buf = appendRecord(buf, ts, stream, tagFull, lines[:i])
		lines = lines[i+1:]
	}
	buf = appendPieces(buf, ts, stream, trail)
	// Keep a grown buffer for the next batch, but not a huge one: a burst must not pin
	// memory in a process whose footprint is counted per pod.
	if cap(buf) <= 4*MaxLineSize {
		l.buf = buf
	}
	if _, err := l.f.Write(buf); err != nil {
		return fmt.Errorf("write container log %s: %w", l.path, err)
	}
	return nil
}

// appendPieces appends b as P records of at most MaxLineSize bytes each.
func appendPieces(buf []byte, ts time.Time, stream string, b []byte) []byte {
	for len(b) > 0 {
		n := min(len(b), MaxLineSize)
		buf = appendRecord(buf, ts, stream, tagPartial, b[:n])
		b = b[n:]
	}
	return buf
}

// Stream turns one output stream of a container into records. Bytes after the last newline
// are held until the line completes, reaches MaxLineSize, or the stream is closed.
type Stream struct {
	file    *File
	name    string
	pending []byte
}

// Write consumes container output. It never keeps more than MaxLineSize bytes pending.
func (s *Stream) Write(p []byte) (int, error) {
	n := len(p)
	data := p
	if len(s.pending) > 0 {
		s.pending = append(s.pending, p...)
		data = s.pending
	}
	full, rest := splitLines(data)
	// A line that already exceeds MaxLineSize without a newline goes out as P pieces now;
	// what is left (< MaxLineSize) waits for the rest of its line.
	var partial []byte
	if len(rest) >= MaxLineSize {
		cut := len(rest) - len(rest)%MaxLineSize
		partial, rest = rest[:cut], rest[cut:]
	}
	var err error
	if len(full) > 0 || len(partial) > 0 {
		err = s.writeSplit(full, partial)
	}
	// rest may alias s.pending or p: copy it to the front of the pending buffer.
	s.pending = append(s.pending[:0], rest...)
	if cap(s.pending) > 2*MaxLineSize {
		s.pending = append([]byte(nil), s.pending...)
	}
	return n, err
}

// writeSplit writes full (complete lines) and partial, splitting lines longer than
// MaxLineSize into P pieces followed by an F record with the line's tail.
func (s *Stream) writeSplit(full, partial []byte) error {
	start := 0
	for i := 0; i < len(full); {
		j := bytes.IndexByte(full[i:], '\n') + i
		if j-i > MaxLineSize {
			// Flush the short lines before this one, then the long one in pieces.
			if err := s.file.writeRecords(s.name, nil, full[start:i], nil); err != nil {
				return err
			}
			line := full[i : j+1]
			cut := (len(line) - 2) / MaxLineSize * MaxLineSize
			if err := s.file.writeRecords(s.name, line[:cut], line[cut:], nil); err != nil {
				return err
			}
			start = j + 1
		}
		i = j + 1
	}
	return s.file.writeRecords(s.name, nil, full[start:], partial)
}

// Close writes output that ended without a newline as a P record, as containerd does: the
// line was never terminated by the container.
func (s *Stream) Close() error {
	if len(s.pending) == 0 {
		return nil
	}
	err := s.file.writeRecords(s.name, nil, nil, s.pending)
	s.pending = nil
	return err
}

// splitLines returns the prefix of b up to and including its last newline, and the rest.
func splitLines(b []byte) (full, rest []byte) {
	i := bytes.LastIndexByte(b, '\n')
	return b[:i+1], b[i+1:]
}
