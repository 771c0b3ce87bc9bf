package config

// DefaultTOML is the full default configuration with a comment for every key, printed by
// `cri-mini config default`. A test keeps it equal to Default().
const DefaultTOML = `# cri-mini configuration. Every key is optional: the values below are the defaults.

# Path of the CRI gRPC unix socket (kubelet's --container-runtime-endpoint is unix://<listen>).
listen = "/run/cri-mini/cri-mini.sock"

# Persistent state: metadata database, image layers, container writable layers.
root = "/var/lib/cri-mini"

# Volatile state: namespace pins, monitor sockets, pod /dev/shm. Lost on reboot, as it should be.
state = "/run/cri-mini"

# Cgroup manager. Only "cgroupfs" is supported.
cgroup_driver = "cgroupfs"

# After SIGTERM or SIGINT, in-flight RPCs get this long to finish. Containers are never touched.
shutdown_timeout = "10s"

[cni]
# The first valid network config in this directory, by file name, is used. The directory is
# watched: a config added later makes the node NetworkReady without a restart.
conf_dir = "/etc/cni/net.d"
# Directories searched for CNI plugin binaries, in order.
bin_dirs = ["/opt/cni/bin"]

[registry]
# Per-registry host configuration in containerd's layout: <config_path>/<host>/hosts.toml
# (mirrors, plain HTTP, CA files, skip_verify). Existing containerd files work unchanged.
# Empty turns per-host configuration off.
config_path = "/etc/cri-mini/certs.d"
# Layers one pull downloads at the same time.
max_concurrent_downloads = 3
# A pull that receives no data for this long fails instead of hanging.
progress_timeout = "1m0s"

[sandbox]
# Size in bytes of each pod's /dev/shm.
shm_size = 67108864

[streaming]
# Exec, attach and port-forward server, host:port. Port 0 picks a free port.
address = "127.0.0.1:0"
# A stream with no traffic for this long is closed.
idle_timeout = "4h0m0s"
# Serve TLS when both are set.
tls_cert = ""
tls_key = ""

[metrics]
# Prometheus metrics endpoint, host:port. Empty turns it off.
address = ""
`
