package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// exitFile is the name of a container's exit record inside its directory.
const exitFile = "exit.json"

// ExitRecord is the truth about how a container's process ended (DESIGN.md section 7): the
// daemon's view is a cache of it and rebuilds from it after a restart.
type ExitRecord struct {
	Pid        int       `json:"pid"`
	ExitCode   int       `json:"exitCode"`         // 128+signal when killed by a signal
	Signal     int       `json:"signal,omitempty"` // the killing signal, 0 for a normal exit
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	FinishedAt time.Time `json:"finishedAt"` // serialised as RFC3339Nano
}

// ExitFromWaitStatus converts a wait(2) status into a record. A process killed by a signal
// gets exit code 128+signal, the shell convention the CRI and kubelet use.
func ExitFromWaitStatus(pid int, ws syscall.WaitStatus, at time.Time) ExitRecord {
	rec := ExitRecord{Pid: pid, FinishedAt: at.UTC()}
	switch {
	case ws.Signaled():
		rec.Signal = int(ws.Signal())
		rec.ExitCode = 128 + rec.Signal
	case ws.Exited():
		rec.ExitCode = ws.ExitStatus()
	default:
		// Stopped or continued statuses are never reported by a wait without WUNTRACED;
		// treat anything else as an unknown failure rather than success.
		rec.ExitCode = 255
	}
	return rec
}

// ExitPath returns the path of the exit record of a container whose state directory is dir.
func ExitPath(dir string) string { return filepath.Join(dir, exitFile) }

// WriteExit stores rec in dir atomically: a reader sees either no record or a complete one,
// also after a crash (temp file, fsync, rename, fsync of the directory so the rename itself
// is durable).
func WriteExit(dir string, rec ExitRecord) (retErr error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode exit record: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".exit-*")
	if err != nil {
		return fmt.Errorf("create exit record in %s: %w", dir, err)
	}
	defer func() {
		if retErr != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write exit record %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync exit record %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close exit record %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), ExitPath(dir)); err != nil {
		return fmt.Errorf("publish exit record in %s: %w", dir, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ErrNoExitRecord means the container has no exit record (it has not exited, or it exited
// while nothing could record it).
var ErrNoExitRecord = errors.New("no exit record")

// ReadExit reads the exit record in dir. A missing record wraps ErrNoExitRecord; a corrupt
// one is an error that names the file.
func ReadExit(dir string) (ExitRecord, error) {
	var rec ExitRecord
	data, err := os.ReadFile(ExitPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("read exit record in %s: %w", dir, ErrNoExitRecord)
	}
	if err != nil {
		return rec, fmt.Errorf("read exit record in %s: %w", dir, err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("decode exit record %s: %w", ExitPath(dir), err)
	}
	return rec, nil
}
