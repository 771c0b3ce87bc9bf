package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/childreap"
	"github.com/cri-mini/cri-mini/pkg/ns"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/store"
)

// podInitCgroup is the leaf of the pod cgroup the pod init runs in: on cgroup v2 a cgroup
// with processes cannot also have children with controllers, so it never sits in the pod
// cgroup itself (which holds the containers' cgroups). The sandbox ID is part of the name:
// kubelet gives the next attempt of a pod's sandbox the same pod cgroup, and the two inits
// may briefly coexist.
func podInitCgroup(sb *Sandbox) string { return path.Join(sb.CgroupParent, "pod-init-"+sb.ID) }

// PodInits starts and stops the built-in init (`cri-mini pause`) of pods that share one PID
// namespace, and tells containers where that namespace is. The daemon, not the pod's
// monitor, starts it: it is needed before any container exists, and it must outlive both
// the daemon and a monitor restart. Each init is recorded (pid and start time) in a file
// under a volatile directory, so a restarted daemon finds it again; a reboot takes both
// away. It implements Hooks.StartPodInit and Hooks.StopPodInit. Safe for concurrent use.
type PodInits struct {
	dir string
	cgm *cgroups.Manager
	// binary is the sealed copy of the program with the pause subcommand (the lean monitor
	// binary, whose start is quicker and whose memory smaller), shared by every init this
	// daemon run starts.
	binary *runtime.SealedBinary

	mu sync.Mutex
	// recs caches the records, so that status queries read no file once an init is known
	// (after a restart each record is read once, on first use).
	recs map[string]podInitRecord
}

// NewPodInits records pod inits under dir (volatile: /run/...) and runs them from binary
// (nil is this executable), which must have the pause subcommand. The caller owns binary.
func NewPodInits(dir string, cgm *cgroups.Manager, binary *runtime.SealedBinary) *PodInits {
	if cgm == nil {
		cgm = cgroups.New()
	}
	if binary == nil {
		binary = runtime.NewSealedBinary("")
	}
	return &PodInits{dir: dir, cgm: cgm, binary: binary, recs: map[string]podInitRecord{}}
}

func (p *PodInits) record(id string) string { return filepath.Join(p.dir, id+".json") }

type podInitRecord struct {
	runtime.PauseProcess
	Cgroup string `json:"cgroup"`
}

// Start starts the init of sb in its NET/IPC/UTS namespaces and a new PID namespace, in a
// leaf of the pod cgroup. On error nothing is left running or recorded.
func (p *PodInits) Start(ctx context.Context, sb *Sandbox) (retErr error) {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("create pod init dir: %w", err)
	}
	exe, err := p.binary.Get()
	if err != nil {
		return fmt.Errorf("pod init binary: %w", err)
	}
	cg := podInitCgroup(sb)
	if _, err := p.cgm.Create(cg, nil); err != nil {
		return fmt.Errorf("create pod init cgroup: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = p.removeRecord(sb.ID)
			_ = p.cgm.Remove(cg)
		}
	}()
	proc, pp, err := runtime.StartPause(ctx, runtime.PauseOptions{
		Exe:        exe,
		NS:         ns.Paths{Net: sb.NetNSPath, IPC: sb.IPCNSPath, UTS: sb.UTSNSPath},
		Userns:     sb.UsernsPath,
		CgroupPath: cg,
		Cgroups:    p.cgm,
		Commit: func(pp runtime.PauseProcess) error {
			rec := podInitRecord{PauseProcess: pp, Cgroup: cg}
			if err := writeJSONAtomic(p.record(sb.ID), rec); err != nil {
				return err
			}
			p.mu.Lock()
			p.recs[sb.ID] = rec
			p.mu.Unlock()
			return nil
		},
	})
	if err != nil {
		return err
	}
	// While this daemon runs it is the parent and must reap it; after a restart the node's
	// init (or a subreaper) does.
	childreap.Reap(proc)
	klog.FromContext(ctx).V(2).Info("Pod init started", "podSandboxID", sb.ID, "pid", pp.Pid)
	return nil
}

// Stop stops the init of sandbox id (the kernel then kills anything left in its PID
// namespace) and forgets it. Stopping an init that is not running is not an error.
func (p *PodInits) Stop(ctx context.Context, id string) error {
	rec, err := p.load(id)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fd, ok, err := runtime.FindPause(rec.PauseProcess)
	if err != nil {
		return err
	}
	if ok {
		err := runtime.StopPause(ctx, fd, 2*time.Second)
		_ = unix.Close(fd)
		if err != nil {
			return fmt.Errorf("stop pod init of sandbox %s: %w", id, err)
		}
		klog.FromContext(ctx).V(2).Info("Pod init stopped", "podSandboxID", id, "pid", rec.Pid)
	}
	if err := p.removeCgroup(rec.Cgroup); err != nil {
		return err
	}
	return p.removeRecord(id)
}

// removeCgroup retries briefly: the cgroup lists an exited process until it is reaped.
func (p *PodInits) removeCgroup(cg string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = p.cgm.Remove(cg); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove pod init cgroup: %w", err)
}

// Pid returns the PID of the running init of sandbox id, or 0.
func (p *PodInits) Pid(id string) int {
	rec, err := p.load(id)
	if err != nil {
		return 0
	}
	fd, ok, err := runtime.FindPause(rec.PauseProcess)
	if err != nil || !ok {
		return 0
	}
	_ = unix.Close(fd)
	return rec.Pid
}

// PIDNamespace returns the path of the PID namespace of sandbox id's init, for containers
// that join it. An init that is not running is a failed precondition: the pod cannot get
// new containers sharing its PID namespace.
func (p *PodInits) PIDNamespace(id string) (string, error) {
	if pid := p.Pid(id); pid != 0 {
		return "/proc/" + strconv.Itoa(pid) + "/ns/pid", nil
	}
	return "", fmt.Errorf("pod sandbox %s shares its PID namespace but its pod init is not running: %w",
		id, store.ErrFailedPrecondition)
}

func (p *PodInits) load(id string) (podInitRecord, error) {
	p.mu.Lock()
	rec, ok := p.recs[id]
	p.mu.Unlock()
	if ok {
		return rec, nil
	}
	b, err := os.ReadFile(p.record(id))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode pod init record of sandbox %s: %w", id, err)
	}
	p.mu.Lock()
	p.recs[id] = rec
	p.mu.Unlock()
	return rec, nil
}

func (p *PodInits) removeRecord(id string) error {
	p.mu.Lock()
	delete(p.recs, id)
	p.mu.Unlock()
	if err := os.Remove(p.record(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pod init record: %w", err)
	}
	return nil
}

func writeJSONAtomic(dst string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", dst, err)
	}
	return writeFileAtomic(dst, b, 0o600)
}
