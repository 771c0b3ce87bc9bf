// Package container manages the containers of the node: records in the metadata store,
// an in-memory index that Status and List answer from, name reservation, the per-pod
// monitors that own the containers' processes, and the runtime adapter the monitors use.
package container

import (
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-mini/cri-mini/pkg/cgroups"
	"github.com/cri-mini/cri-mini/pkg/runtime"
	"github.com/cri-mini/cri-mini/pkg/seccomp"
)

// State of a container, as the CRI names them.
type State string

// States. Creating is only ever seen in the store: a record left in it means the daemon
// died during Create, and start-up cleans it up.
const (
	StateCreating State = "CREATING"
	StateCreated  State = "CREATED"
	StateRunning  State = "RUNNING"
	StateExited   State = "EXITED"
)

// Exit reasons reported with an exited container.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
	ReasonUnknown   = "Unknown"
)

// unknownExitCode is reported when neither the monitor nor an exit record knows how the
// container ended (DESIGN.md section 7).
const unknownExitCode = 255

// Config is what a caller asks for.
type Config struct {
	Name    string `json:"name"`
	Attempt uint32 `json:"attempt"`
	// Image is the image as the request named it.
	Image string `json:"image"`

	Command    []string         `json:"command,omitempty"`
	Args       []string         `json:"args,omitempty"`
	WorkingDir string           `json:"workingDir,omitempty"`
	Env        []string         `json:"env,omitempty"`
	Mounts     []runtime.Mount  `json:"mounts,omitempty"`
	Devices    []runtime.Device `json:"devices,omitempty"`

	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// LogPath is relative to the pod's log directory.
	LogPath string `json:"logPath,omitempty"`

	TTY       bool `json:"tty,omitempty"`
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`

	// User: RunAsUsername wins over RunAsUser; neither means the image's user.
	RunAsUser          *int64   `json:"runAsUser,omitempty"`
	RunAsUsername      string   `json:"runAsUsername,omitempty"`
	RunAsGroup         *int64   `json:"runAsGroup,omitempty"`
	SupplementalGroups []uint32 `json:"supplementalGroups,omitempty"`
	// SupplementalGroupsStrict leaves out the groups the image's /etc/group gives the user.
	SupplementalGroupsStrict bool `json:"supplementalGroupsStrict,omitempty"`

	// Security context; see runtime.Security. Privileged needs a privileged sandbox.
	Privileged     bool     `json:"privileged,omitempty"`
	CapAdd         []string `json:"capAdd,omitempty"`
	CapDrop        []string `json:"capDrop,omitempty"`
	AmbientCaps    []string `json:"ambientCaps,omitempty"`
	NoNewPrivs     bool     `json:"noNewPrivs,omitempty"`
	ReadonlyRootfs bool     `json:"readonlyRootfs,omitempty"`
	MaskedPaths    []string `json:"maskedPaths,omitempty"`
	ReadonlyPaths  []string `json:"readonlyPaths,omitempty"`

	Resources *cgroups.Resources `json:"resources,omitempty"`
	// OOMScoreAdj is the requested oom_score_adj; the spec gets it clamped to what the
	// host permits (see runtime.OOMScoreAdjFloor).
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`

	Namespaces NamespaceOptions `json:"namespaces"`

	// Seccomp is the seccomp profile choice; nil is unconfined.
	Seccomp *seccomp.Profile `json:"seccomp,omitempty"`
}

// Container is a container as reported to callers. Values returned by the Manager are
// copies: changing them changes nothing.
type Container struct {
	ID           string `json:"id"`
	PodSandboxID string `json:"podSandboxID"`
	Config       Config `json:"config"`
	State        State  `json:"state"`

	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitempty"`
	Pid        int       `json:"pid,omitempty"`
	ExitCode   int32     `json:"exitCode"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`

	// ImageID is the config digest; ImageRef the repo digest when known, else the ID.
	ImageID  string `json:"imageID"`
	ImageRef string `json:"imageRef"`
	// LogPath is the absolute CRI log path ("" when the pod has no log directory).
	LogPath string `json:"logPath,omitempty"`
	// StopSignal is the image's stop signal, resolved at create time.
	StopSignal int `json:"stopSignal"`

	RootfsDir  string `json:"rootfsDir"`
	CgroupPath string `json:"cgroupPath,omitempty"`
	// MonitorDir is the state directory of the pod's monitor (its socket is in it).
	MonitorDir string      `json:"monitorDir"`
	Spec       *specs.Spec `json:"spec,omitempty"`
}

// nameKey identifies a container name reservation: one per pod, name and attempt.
func nameKey(podID, name string, attempt uint32) string {
	return podID + "/" + name + "/" + strconv.FormatUint(uint64(attempt), 10)
}
