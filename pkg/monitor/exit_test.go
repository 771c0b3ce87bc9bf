package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestExitFromWaitStatus(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 7200))
	tests := []struct {
		name     string
		ws       syscall.WaitStatus // raw wait(2) status word
		code     int
		signal   int
		finished time.Time
	}{
		{"exit 0", 0, 0, 0, at.UTC()},
		{"exit 3", 3 << 8, 3, 0, at.UTC()},
		{"exit 255", 255 << 8, 255, 0, at.UTC()},
		{"SIGKILL", syscall.WaitStatus(syscall.SIGKILL), 137, 9, at.UTC()},
		{"SIGTERM", syscall.WaitStatus(syscall.SIGTERM), 143, 15, at.UTC()},
		{"SIGSEGV with core", syscall.WaitStatus(0x80 | syscall.SIGSEGV), 139, 11, at.UTC()},
		{"stopped is not success", 0x7f | syscall.WaitStatus(syscall.SIGSTOP)<<8, 255, 0, at.UTC()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := ExitFromWaitStatus(42, tc.ws, at)
			if rec.ExitCode != tc.code || rec.Signal != tc.signal || rec.Pid != 42 || !rec.FinishedAt.Equal(tc.finished) {
				t.Errorf("got %+v, want code %d signal %d", rec, tc.code, tc.signal)
			}
		})
	}
}

func TestWriteReadExit(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	tests := []struct {
		name string
		recs []ExitRecord // written in order; the last one must be read back
	}{
		{"plain", []ExitRecord{{Pid: 7, ExitCode: 3, FinishedAt: at}}},
		{"oom kill", []ExitRecord{{Pid: 8, ExitCode: 137, Signal: 9, OOMKilled: true, FinishedAt: at}}},
		{"overwrite", []ExitRecord{{Pid: 9, ExitCode: 1, FinishedAt: at}, {Pid: 10, ExitCode: 0, FinishedAt: at.Add(time.Second)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, r := range tc.recs {
				if err := WriteExit(dir, r); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadExit(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.recs[len(tc.recs)-1]
			if got != want {
				t.Errorf("ReadExit = %+v, want %+v", got, want)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != exitFile {
				t.Errorf("directory holds %v, want only %s (no temp files)", entries, exitFile)
			}
		})
	}
}

func TestReadExitErrors(t *testing.T) {
	tests := []struct {
		name     string
		content  *string
		noRecord bool
	}{
		{"missing", nil, true},
		{"corrupt", ptr(`{"pid":`), false},
		{"empty", ptr(""), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != nil {
				if err := os.WriteFile(filepath.Join(dir, exitFile), []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := ReadExit(dir)
			if err == nil {
				t.Fatal("ReadExit succeeded")
			}
			if errors.Is(err, ErrNoExitRecord) != tc.noRecord {
				t.Errorf("ReadExit error %v: ErrNoExitRecord = %v, want %v", err, !tc.noRecord, tc.noRecord)
			}
		})
	}
}

func TestWriteExitMissingDir(t *testing.T) {
	if err := WriteExit(filepath.Join(t.TempDir(), "gone"), ExitRecord{}); err == nil {
		t.Fatal("WriteExit into a missing directory succeeded")
	}
}

func ptr(s string) *string { return &s }
