package runtime

// Cgroups is what the runtime needs of a cgroup manager: the directories of a cgroup (to
// place a child in it) and removing one. *cgroups.Manager is one. The monitor uses a
// lighter one that knows only the directories the daemon resolved for a container
// (pkg/container/spawner): this package must not import the cgroup library, because the
// monitor binary links it, and every container init is that binary: Go runs the init of
// each linked package at every start, and the library's dependencies (eBPF, D-Bus) cost
// milliseconds per container and memory per pod.
type Cgroups interface {
	IsV2() bool
	// Dirs returns the absolute directory of the cgroup per controller ("" key for the
	// unified hierarchy).
	Dirs(path string) (map[string]string, error)
	Remove(path string) error
}
