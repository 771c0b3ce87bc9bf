package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// layerTTL is how old a writable layer figure may be before a new walk starts.
	layerTTL = 10 * time.Second
)

// upperDir is the container's writable layer (see runtime.MountRootfs).
func upperDir(rootfsDir string) string { return filepath.Join(rootfsDir, "upper") }

// layerCache keeps each container's writable layer usage, refreshed by background walks.
type layerCache struct {
	mu      sync.Mutex
	entries map[string]*layerEntry
}

type layerEntry struct {
	usage   *LayerUsage
	walking bool
}

// get returns a copy of the cached usage of dir (nil before the first walk finished),
// starting a walk when there is none or it is older than layerTTL. It never waits for a
// walk: a list of many containers must not add up their disk time. Walks run on wg and
// end with ctx. Create starts each container's first walk, while its layer is still empty.
func (lc *layerCache) get(ctx context.Context, id, dir string, wg *sync.WaitGroup) *LayerUsage {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.entries == nil {
		lc.entries = map[string]*layerEntry{}
	}
	e := lc.entries[id]
	if e == nil {
		e = &layerEntry{}
		lc.entries[id] = e
	}
	if !e.walking && ctx.Err() == nil && (e.usage == nil || time.Since(e.usage.Timestamp) > layerTTL) {
		e.walking = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := walkUsage(ctx, dir)
			lc.mu.Lock()
			defer lc.mu.Unlock()
			if err == nil {
				e.usage = u
			}
			e.walking = false
		}()
	}
	if e.usage == nil {
		return nil
	}
	u := *e.usage
	return &u
}

// forget drops a removed container's entry (a walk still running just finishes).
func (lc *layerCache) forget(id string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	delete(lc.entries, id)
}

// walkUsage adds up the disk blocks and inodes under dir, as du does: hard links count
// once. It stops when ctx ends.
func walkUsage(ctx context.Context, dir string) (*LayerUsage, error) {
	u := &LayerUsage{Mountpoint: mountpointOf(dir)}
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		u.InodesUsed++
		u.UsedBytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk writable layer %s: %w", dir, err)
	}
	u.Timestamp = time.Now()
	return u, nil
}

// mountpointOf returns the mount point of the filesystem holding p: the longest mount
// point in this process's mount table that is p or one of its parents.
func mountpointOf(p string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	best := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name                                 string
	RxBytes, RxErrors, TxBytes, TxErrors uint64
}

// netDevStats reads the interfaces of pid's network namespace from /proc/<pid>/net/dev
// (which shows the reader the namespace of pid), loopback excluded.
func netDevStats(pid int) ([]InterfaceStats, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetDev(f)
}

func parseNetDev(f io.Reader) ([]InterfaceStats, error) {
	var out []InterfaceStats
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue // two header lines
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		fields := strings.Fields(rest)
		if name == "lo" || len(fields) < 11 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(fields[i], 10, 64); return v }
		// Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
		out = append(out, InterfaceStats{Name: name, RxBytes: n(0), RxErrors: n(2), TxBytes: n(8), TxErrors: n(10)})
	}
	return out, sc.Err()
}
