package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pssKiB returns the Pss line of /proc/PID/smaps_rollup: the process's resident memory with
// every shared page divided by the number of processes mapping it.
func pssKiB(pid int) (int, error) {
	r, err := rollup(pid)
	return r["Pss"], err
}

// rollup returns the kB lines of /proc/PID/smaps_rollup (Pss, Pss_Anon, Pss_File,
// Pss_Shmem...).
func rollup(pid int) (map[string]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if fields := strings.Fields(v); ok && len(fields) == 2 && fields[1] == "kB" {
			if n, err := strconv.Atoi(fields[0]); err == nil {
				out[k] = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, ok := out["Pss"]; !ok {
		return nil, fmt.Errorf("no Pss line in smaps_rollup of %d", pid)
	}
	return out, nil
}

// proc is what the walk of /proc needs of one process.
type proc struct {
	pid, ppid int
	exe       string // readlink of /proc/PID/exe ("" when unreadable)
	args      []string
}

func readProcs() (map[int]proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		// The command name may hold spaces and parentheses: fields start after the last ')'.
		i := strings.LastIndexByte(string(stat), ')')
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out[pid] = proc{pid: pid, ppid: ppid, exe: exe, args: strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")}
	}
	return out, nil
}

// perPodProcs returns the daemon's descendants that run the cri-mini binary (from its file
// or from a sealed memfd copy): monitors, pod init/pause processes, helpers. Containers'
// own processes have exec'd their image's programs and are not counted (the anchor does
// not count them either: shim and pause only).
func perPodProcs(daemon int, procs map[int]proc) []proc {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []proc
	queue := append([]int(nil), children[daemon]...)
	for len(queue) > 0 && len(out) <= len(procs) {
		p := procs[queue[0]]
		queue = queue[1:]
		queue = append(queue, children[p.pid]...)
		if strings.Contains(filepath.Base(p.exe), "cri-mini") {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// memReport is the per-pod memory measurement.
type memReport struct {
	pods                    int
	daemonIdle, daemonPods  int // KiB; idle is before the image pull
	daemonBefore            int // KiB, after the pull and a warm-up pod, before the pods
	daemonBeforeAnon        int // KiB of Pss_Anon at daemonBefore
	daemonPodsAnon          int // KiB of Pss_Anon with the pods
	perPodProcs             map[string][]int
	perPodTotal, perPodEach float64 // KiB
	perPodAnon              float64 // KiB per pod of Pss_Anon: private, not the shared text
}

// podMemBench measures the daemon's PSS idle, starts n pods of one sleeping busybox
// container each, lets them settle, and measures the PSS of every per-pod process and of
// the daemon again. The pods are removed before it returns.
func (b *bench) podMemBench(ctx context.Context, daemon, n int, logDir string, settle time.Duration) (rep memReport, retErr error) {
	rep.pods = n
	var err error
	if rep.daemonIdle, err = pssKiB(daemon); err != nil {
		return rep, fmt.Errorf("daemon PSS: %w", err)
	}
	if err := b.pull(ctx, busybox); err != nil {
		return rep, fmt.Errorf("pull %s: %w", busybox, err)
	}
	// The first pod of the daemon's life pages in the daemon's code that serves pods, once
	// per node: a warm-up pod (run, create, start, stop, remove) pays that before the
	// baseline, so that the growth measured below is what each pod keeps.
	if _, err := b.lifecycleCRIBench(ctx, 1, logDir, false); err != nil {
		return rep, fmt.Errorf("warm-up pod: %w", err)
	}
	// The pods' cost is measured from here: what the pull and the warm-up left in the daemon
	// is not theirs. Measured after the same settling time as the pods, so that memory held
	// only for a while (and given back once idle) does not count against them.
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(settle):
	}
	before, err := rollup(daemon)
	if err != nil {
		return rep, fmt.Errorf("daemon PSS: %w", err)
	}
	rep.daemonBefore, rep.daemonBeforeAnon = before["Pss"], before["Pss_Anon"]
	var pods []string
	defer func() {
		for _, id := range pods {
			_, _ = b.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			if _, err := b.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil && retErr == nil {
				retErr = fmt.Errorf("remove pod %s: %w", id, err)
			}
		}
	}()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("cribench-mem-%d-%d", os.Getpid(), i)
		cfg := benchPod(name, logDir)
		pr, err := b.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			return rep, fmt.Errorf("run pod %d: %w", i, err)
		}
		pods = append(pods, pr.PodSandboxId)
		cr, err := b.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pr.PodSandboxId, SandboxConfig: cfg, Config: sleeper(),
		})
		if err != nil {
			return rep, fmt.Errorf("create container in pod %d: %w", i, err)
		}
		if _, err := b.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			return rep, fmt.Errorf("start container in pod %d: %w", i, err)
		}
	}
	// Idle means idle: let the GC and the scavengers of every process run as they would.
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(settle):
	}
	procs, err := readProcs()
	if err != nil {
		return rep, err
	}
	rep.perPodProcs = map[string][]int{}
	for _, p := range perPodProcs(daemon, procs) {
		r, err := rollup(p.pid)
		if err != nil {
			continue // exited meanwhile
		}
		kind := "other"
		if len(p.args) > 1 {
			kind = p.args[1]
		}
		rep.perPodProcs[kind] = append(rep.perPodProcs[kind], r["Pss"])
		rep.perPodAnon += float64(r["Pss_Anon"])
		rep.perPodTotal += float64(r["Pss"])
	}
	rep.perPodAnon /= float64(n)
	rep.perPodEach = rep.perPodTotal / float64(n)
	after, err := rollup(daemon)
	if err != nil {
		return rep, fmt.Errorf("daemon PSS: %w", err)
	}
	rep.daemonPods, rep.daemonPodsAnon = after["Pss"], after["Pss_Anon"]
	return rep, nil
}

func mib(kib float64) float64 { return kib / 1024 }

func (rep memReport) print(anchors anchorSet) {
	fmt.Printf("memory with %d idle pods of one sleep container (PSS, MiB)\n", rep.pods)
	kinds := make([]string, 0, len(rep.perPodProcs))
	for k := range rep.perPodProcs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		v := rep.perPodProcs[k]
		sum := 0
		for _, x := range v {
			sum += x
		}
		sorted := append([]int(nil), v...)
		sort.Ints(sorted)
		fmt.Printf("  %-10s processes %3d  median %6.2f  sum %7.2f\n", k, len(v), mib(float64(sorted[len(sorted)/2])), mib(float64(sum)))
	}
	fmt.Printf("  per pod: private (Pss_Anon) %.2f, shared text and data %.2f\n",
		mib(rep.perPodAnon), mib(rep.perPodEach-rep.perPodAnon))
	growth := float64(rep.daemonPods-rep.daemonBefore) / float64(rep.pods)
	fmt.Printf("  daemon idle %.2f, after the image pull and a warm-up pod %.2f, with the pods %.2f (growth per pod %.2f, private %.2f)\n",
		mib(float64(rep.daemonIdle)), mib(float64(rep.daemonBefore)), mib(float64(rep.daemonPods)), mib(growth),
		mib(float64(rep.daemonPodsAnon-rep.daemonBeforeAnon)/float64(rep.pods)))
	anchors.row("per-pod processes, per pod", mib(rep.perPodEach), "MiB")
	anchors.row("per pod incl. daemon growth", mib(rep.perPodEach+growth), "MiB")
	anchors.row("daemon idle", mib(float64(rep.daemonIdle)), "MiB")
}
