package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cri-mini/cri-mini/pkg/image"
	"github.com/cri-mini/cri-mini/pkg/monitor"
	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    syscall.Signal
		wantErr bool
	}{
		{"", syscall.SIGTERM, false},
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGQUIT", syscall.SIGQUIT, false},
		{"KILL", syscall.SIGKILL, false},
		{"9", syscall.SIGKILL, false},
		{"0", 0, true},
		{"65", 0, true},
		{"SIGNOPE", 0, true},
	} {
		got, err := parseSignal(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestUserSpec(t *testing.T) {
	uid, gid := int64(1000), int64(2000)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"image user", Config{}, "nobody"},
		{"uid", Config{RunAsUser: &uid}, "1000"},
		{"uid and gid", Config{RunAsUser: &uid, RunAsGroup: &gid}, "1000:2000"},
		{"name wins", Config{RunAsUser: &uid, RunAsUsername: "www"}, "www"},
		{"name and gid", Config{RunAsUsername: "www", RunAsGroup: &gid}, "www:2000"},
	} {
		if got := userSpec(tc.cfg, "nobody"); got != tc.want {
			t.Errorf("%s: userSpec = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestExitedFrom(t *testing.T) {
	at := time.Unix(1700000000, 5)
	for _, tc := range []struct {
		name     string
		rec      *monitor.ExitRecord
		code     int32
		reason   string
		finished time.Time
	}{
		{"completed", &monitor.ExitRecord{ExitCode: 0, FinishedAt: at}, 0, ReasonCompleted, at},
		{"error", &monitor.ExitRecord{ExitCode: 1, FinishedAt: at}, 1, ReasonError, at},
		{"killed", &monitor.ExitRecord{ExitCode: 137, Signal: 9, FinishedAt: at}, 137, ReasonError, at},
		{"oom", &monitor.ExitRecord{ExitCode: 137, Signal: 9, OOMKilled: true, FinishedAt: at}, 137, ReasonOOMKilled, at},
		{"unknown", nil, unknownExitCode, ReasonUnknown, time.Time{}},
	} {
		c := exitedFrom(Container{ID: "x", State: StateRunning}, tc.rec)
		if c.State != StateExited || c.ExitCode != tc.code || c.Reason != tc.reason {
			t.Errorf("%s: state %s code %d reason %q; want EXITED %d %q", tc.name, c.State, c.ExitCode, c.Reason, tc.code, tc.reason)
		}
		if !tc.finished.IsZero() && !c.FinishedAt.Equal(tc.finished) {
			t.Errorf("%s: finished %v, want %v", tc.name, c.FinishedAt, tc.finished)
		}
		if tc.finished.IsZero() && c.FinishedAt.IsZero() {
			t.Errorf("%s: no finish time", tc.name)
		}
	}
}

// fakeSandboxes and fakeImages stand in for the sandbox manager and the image store.
type fakeSandboxes map[string]*sandbox.Sandbox

func (f fakeSandboxes) Get(id string) (*sandbox.Sandbox, error) {
	if sb, ok := f[id]; ok {
		return sb, nil
	}
	return nil, store.ErrNotFound
}

func (f fakeSandboxes) Hold(id string) (*sandbox.Sandbox, func(), error) {
	sb, err := f.Get(id)
	if err != nil {
		return nil, nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, nil, store.ErrFailedPrecondition
	}
	return sb, func() {}, nil
}

type fakeImages map[string]*image.Image

func (f fakeImages) Use(ref string) (*image.Image, func(), error) {
	img, err := f.Get(ref)
	return img, func() {}, err
}

func (f fakeImages) Get(ref string) (*image.Image, error) {
	if img, ok := f[ref]; ok {
		return img, nil
	}
	return nil, store.ErrNotFound
}

func (f fakeImages) LowerDirs(string) (string, []string, error) {
	return "", nil, errors.New("no layers in this test")
}

func newTestManager(t *testing.T, db *store.DB, dir string) *Manager {
	t.Helper()
	m, err := NewManager(context.Background(), Options{
		DB:        db,
		Sandboxes: fakeSandboxes{"ready": {ID: "ready", State: sandbox.StateReady}, "notready": {ID: "notready", State: sandbox.StateNotReady}},
		Images:    fakeImages{"busybox": {ID: "sha256:abc"}},
		RootDir:   filepath.Join(dir, "containers"),
		StateDir:  filepath.Join(dir, "mon"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func openDB(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestCreateRejects covers the checks Create makes before any side effect, and that a
// failed create releases the name.
func TestCreateRejects(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, openDB(t, dir), dir)
	for _, tc := range []struct {
		name string
		pod  string
		cfg  Config
		want error
	}{
		{"no name", "ready", Config{Image: "busybox"}, store.ErrInvalidArgument},
		{"no image", "ready", Config{Name: "c"}, store.ErrInvalidArgument},
		{"unknown pod", "nope", Config{Name: "c", Image: "busybox"}, store.ErrNotFound},
		{"pod not ready", "notready", Config{Name: "c", Image: "busybox"}, store.ErrFailedPrecondition},
		{"unknown image", "ready", Config{Name: "c", Image: "alpine"}, store.ErrNotFound},
	} {
		if _, err := m.Create(context.Background(), tc.pod, tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
	// The layers cannot be found: the create fails after the name was reserved and the
	// record written; both must be gone again.
	if _, err := m.Create(context.Background(), "ready", Config{Name: "c", Image: "busybox"}); err == nil {
		t.Fatal("create without layers succeeded")
	}
	if len(m.names) != 0 || len(m.List()) != 0 {
		t.Fatalf("failed create left names %v, containers %d", m.names, len(m.List()))
	}
	var n int
	_ = m.o.DB.View(func(tx *store.Tx) error {
		return tx.ForEach(bucket, func(string, []byte) error { n++; return nil })
	})
	if n != 0 {
		t.Fatalf("failed create left %d records", n)
	}
}

// TestRecover checks start-up reconciliation without monitors: an exit record gives the
// exit code, no record gives 255 "Unknown", an interrupted create is removed, names are
// reserved again and ID prefixes resolve.
func TestRecover(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	monDir := filepath.Join(dir, "mon", "gone")
	recs := []Container{
		{ID: "aaa111", PodSandboxID: "ready", Config: Config{Name: "a"}, State: StateRunning, MonitorDir: monDir, CreatedAt: time.Unix(1, 0)},
		{ID: "aaa222", PodSandboxID: "ready", Config: Config{Name: "b"}, State: StateRunning, MonitorDir: monDir, CreatedAt: time.Unix(2, 0)},
		{ID: "bbb333", PodSandboxID: "ready", Config: Config{Name: "c"}, State: StateCreating, MonitorDir: monDir,
			RootfsDir: filepath.Join(dir, "containers", "bbb333")},
		{ID: "ccc444", PodSandboxID: "ready", Config: Config{Name: "d"}, State: StateExited, ExitCode: 3, MonitorDir: monDir, CreatedAt: time.Unix(3, 0)},
	}
	if err := db.Update(func(tx *store.Tx) error {
		for i := range recs {
			if err := tx.Put(bucket, recs[i].ID, &recs[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	finished := time.Unix(1700000000, 0).UTC()
	if err := os.MkdirAll(monitor.ContainerDir(monDir, "aaa111"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := monitor.WriteExit(monitor.ContainerDir(monDir, "aaa111"), monitor.ExitRecord{ExitCode: 0, FinishedAt: finished}); err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, db, dir)

	for _, tc := range []struct {
		id     string
		state  State
		code   int32
		reason string
	}{
		{"aaa111", StateExited, 0, ReasonCompleted},
		{"aaa222", StateExited, unknownExitCode, ReasonUnknown},
		{"ccc444", StateExited, 3, ""},
	} {
		c, err := m.Get(tc.id)
		if err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		if c.State != tc.state || c.ExitCode != tc.code || c.Reason != tc.reason {
			t.Errorf("%s: %s %d %q; want %s %d %q", tc.id, c.State, c.ExitCode, c.Reason, tc.state, tc.code, tc.reason)
		}
	}
	if _, err := m.Get("bbb333"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("interrupted create still known: %v", err)
	}
	if _, err := m.Get("aaa"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ambiguous prefix resolved: %v", err)
	}
	if c, err := m.Get("ccc"); err != nil || c.ID != "ccc444" {
		t.Errorf("unique prefix: %v, %v", c, err)
	}
	if got := len(m.List()); got != 3 {
		t.Errorf("List: %d containers, want 3", got)
	}
	if err := m.reserve(nameKey("ready", "a", 0), "new"); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("name of a recovered container not reserved: %v", err)
	}
	// The exits were persisted: a second start-up sees the same.
	var c Container
	if err := db.View(func(tx *store.Tx) error { return tx.Get(bucket, "aaa222", &c) }); err != nil || c.State != StateExited {
		t.Errorf("recovered exit not stored: %+v, %v", c, err)
	}
	// Remove of an exited container without a monitor: record and name go.
	if err := m.Remove(context.Background(), "ccc444"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get("ccc444"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removed container still known: %v", err)
	}
	if err := m.Remove(context.Background(), "ccc444"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second remove: %v, want not found", err)
	}
}

// TestOrphanMonitorDirsRemovedAtStart: the monitor directory of a pod that no longer exists
// (a daemon killed while running the pod) is cleaned up at start-up; a known pod's is kept.
func TestOrphanMonitorDirsRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"gonepod", "ready"} {
		if err := os.MkdirAll(filepath.Join(dir, "mon", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	newTestManager(t, openDB(t, dir), dir)
	if _, err := os.Stat(filepath.Join(dir, "mon", "gonepod")); !os.IsNotExist(err) {
		t.Errorf("monitor dir of a removed pod still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mon", "ready")); err != nil {
		t.Errorf("monitor dir of a live pod removed: %v", err)
	}
}
