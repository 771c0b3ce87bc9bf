package logs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// record is one parsed log record.
type record struct {
	ts      time.Time
	stream  string
	partial bool
	content []byte
}

// parseCRI parses one record (with its trailing newline) exactly as kubelet's parseCRILog
// (k8s.io/cri-client/pkg/logs) does: space-separated timestamp (RFC3339Nano), stream, tag
// (first ':'-separated element; "P" is partial), content = the rest; the record newline is
// stripped from a partial record only.
func parseCRI(line []byte) (record, error) {
	var r record
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return r, errors.New("timestamp is not found")
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return r, fmt.Errorf("timestamp %q: %w", line[:i], err)
	}
	r.ts = ts
	line = line[i+1:]
	if i = bytes.IndexByte(line, ' '); i < 0 {
		return r, errors.New("stream type is not found")
	}
	r.stream = string(line[:i])
	if r.stream != Stdout && r.stream != Stderr {
		return r, fmt.Errorf("unexpected stream type %q", r.stream)
	}
	line = line[i+1:]
	if i = bytes.IndexByte(line, ' '); i < 0 {
		return r, errors.New("log tag is not found")
	}
	tag := string(bytes.Split(line[:i], []byte(":"))[0])
	r.partial = tag == "P"
	if r.partial && len(line) > 0 && line[len(line)-1] == '\n' {
		line = line[:len(line)-1]
	}
	r.content = line[i+1:]
	return r, nil
}

// readRecords parses every record of the file, reading it the way kubelet does (by '\n').
func readRecords(t *testing.T, path string) []record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	rd := bufio.NewReader(bytes.NewReader(data))
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				t.Fatalf("record without a newline at end of file: %q", line)
			}
			r, perr := parseCRI(line)
			if perr != nil {
				t.Fatalf("kubelet would reject %q: %v", line, perr)
			}
			out = append(out, r)
		}
		if err != nil {
			return out
		}
	}
}

// join reproduces what `kubectl logs` shows for one stream.
func join(recs []record, stream string) string {
	var b strings.Builder
	for _, r := range recs {
		if r.stream == stream {
			b.Write(r.content)
		}
	}
	return b.String()
}

func tags(recs []record) string {
	var b strings.Builder
	for _, r := range recs {
		if r.partial {
			b.WriteByte('P')
		} else {
			b.WriteByte('F')
		}
	}
	return b.String()
}

func TestStreamRecords(t *testing.T) {
	long := strings.Repeat("x", 2*MaxLineSize+100)
	exact := strings.Repeat("y", MaxLineSize)
	tests := []struct {
		name   string
		writes []string
		tags   string
	}{
		{"one line", []string{"hi\n"}, "F"},
		{"two lines one write", []string{"a\nb\n"}, "FF"},
		{"empty line", []string{"\n"}, "F"},
		{"line across writes", []string{"ab", "c\n"}, "F"},
		{"no newline at close", []string{"abc"}, "P"},
		{"line then unterminated", []string{"a\nb"}, "FP"},
		{"long line", []string{long + "\n"}, "PPF"},
		{"long line in small writes", chunk(long+"\nz\n", 1000), "PPFF"},
		{"exactly max", []string{exact + "\n"}, "F"},
		{"max without newline then newline", []string{exact, "\n"}, "PF"},
		{"long unterminated", []string{long}, "PPP"},
		{"short, long, short", []string{"s\n" + long + "\nt\n"}, "FPPFF"},
		{"carriage return and tabs kept", []string{"a\r\tb\n"}, "F"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "0.log")
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			s := f.NewStream(Stderr)
			for _, w := range tc.writes {
				if n, err := s.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			recs := readRecords(t, path)
			if got := tags(recs); got != tc.tags {
				t.Errorf("tags = %s, want %s", got, tc.tags)
			}
			if got, want := join(recs, Stderr), strings.Join(tc.writes, ""); got != want {
				t.Errorf("joined content differs: got %d bytes, want %d", len(got), len(want))
			}
			for _, r := range recs {
				if len(r.content) > MaxLineSize+1 {
					t.Errorf("record content of %d bytes exceeds %d", len(r.content), MaxLineSize)
				}
			}
		})
	}
}

func chunk(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestRecordFormatExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.FixedZone("x", 3600))
	f.now = func() time.Time { return ts }
	out, errs := f.NewStream(Stdout), f.NewStream(Stderr)
	for _, step := range []struct {
		s *Stream
		b string
	}{{out, "log content 1\n"}, {errs, "log content 2\npart"}} {
		if _, err := step.s.Write([]byte(step.b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := errs.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "2016-10-05T23:17:09.669794202Z stdout F log content 1\n" +
		"2016-10-05T23:17:09.669794202Z stderr F log content 2\n" +
		"2016-10-05T23:17:09.669794202Z stderr P part\n"
	if string(got) != want {
		t.Errorf("file =\n%s\nwant\n%s", got, want)
	}
}

func TestConcurrentStreamsNeverInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const lines = 2000
	var wg sync.WaitGroup
	for _, name := range []string{Stdout, Stderr} {
		wg.Add(1)
		go func(s *Stream) {
			defer wg.Done()
			for i := range lines {
				// Lines written in two halves exercise the pending buffer under contention.
				line := fmt.Sprintf("%s-%d-%s\n", s.name, i, strings.Repeat("z", i%300))
				h := len(line) / 2
				_, _ = s.Write([]byte(line[:h]))
				_, _ = s.Write([]byte(line[h:]))
			}
		}(f.NewStream(name))
	}
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, path)
	next := map[string]int{}
	for _, r := range recs {
		want := fmt.Sprintf("%s-%d-%s\n", r.stream, next[r.stream], strings.Repeat("z", next[r.stream]%300))
		if r.partial || string(r.content) != want {
			t.Fatalf("record %q (partial %v), want %q", r.content, r.partial, want)
		}
		next[r.stream]++
	}
	if next[Stdout] != lines || next[Stderr] != lines {
		t.Errorf("got %v lines per stream, want %d each", next, lines)
	}
}

// TestReopenLosesNothing rotates the file the way kubelet does (rename, then reopen) while a
// writer is busy: the old and new file together hold every line exactly once, in order.
func TestReopenLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const lines = 3000
	s := f.NewStream(Stdout)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range lines {
			_, _ = fmt.Fprintf(s, "line %d\n", i)
		}
	}()
	var rotated []string
	for i := 0; i < 3; i++ {
		time.Sleep(time.Millisecond)
		old := fmt.Sprintf("%s.%d", path, i)
		if err := os.Rename(path, old); err != nil {
			t.Fatal(err)
		}
		if err := f.Reopen(); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, old)
	}
	<-done
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var all []record
	for _, p := range append(rotated, path) {
		all = append(all, readRecords(t, p)...)
	}
	if len(all) != lines {
		t.Fatalf("%d records after rotation, want %d", len(all), lines)
	}
	for i, r := range all {
		if want := fmt.Sprintf("line %d\n", i); string(r.content) != want {
			t.Fatalf("record %d = %q, want %q", i, r.content, want)
		}
	}
	if err := f.Reopen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reopen after Close = %v, want ErrClosed", err)
	}
}

func BenchmarkStreamWrite(b *testing.B) {
	for _, size := range []int{80, 1024} {
		b.Run(fmt.Sprintf("line=%d", size), func(b *testing.B) {
			f, err := Open(filepath.Join(b.TempDir(), "0.log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			s := f.NewStream(Stdout)
			line := []byte(strings.Repeat("a", size-1) + "\n")
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := s.Write(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
