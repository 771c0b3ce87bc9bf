#!/usr/bin/env bash
# Runs the CRI conformance suite (critest) against cri-mini, fully offline:
#   - builds cri-mini, critest/crictl/ginkgo, the CNI plugins and the test images (cached);
#   - serves the test images from a registry on 127.0.0.1 that cri-mini reaches through
#     hosts.toml mirrors for registry.k8s.io, gcr.io, docker.io and public.ecr.aws;
#   - starts cri-mini with temporary root and state dirs and a test-only bridge and subnet;
#   - runs critest and checks the result against expected-failures.txt.
# Usage: test/critest/run.sh [--benchmark] [extra critest flags...]
# Env: CRI_MINI_BIN (a prebuilt daemon), CRITEST_PARALLEL (default 2), CRITEST_KEEP=1 keeps the work dir for debugging,
#      CRITEST_WEBSOCKET=0 skips the second, WebSocket run of the Streaming specs (full runs only),
#      CRITEST_NFTABLES=1 switches the test network's bridge (ipMasq) and portmap plugins to their
#      nftables backends.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
here=test/critest
out=_output
bin=$out/bin
parallel=${CRITEST_PARALLEL:-2}
benchmark=0
if [[ ${1:-} == --benchmark ]]; then
	benchmark=1
	shift
fi

log() { printf '[critest] %s\n' "$*" >&2; }

[[ $(id -u) == 0 ]] || { log "must run as root (namespaces, mounts, cgroups, iptables)"; exit 1; }

hack/install-deps.sh
hack/build-cri-tools.sh
hack/build-cni-plugins.sh ""
if [[ -z ${CRI_MINI_BIN:-} ]]; then
	make --no-print-directory build
	CRI_MINI_BIN=$bin/cri-mini
fi
go build -o "$bin/" ./$here/testimages ./$here/testregistry ./$here/junitcheck ./hack/benchsummary ./hack/cribench
"$bin/testimages" -out "$out/test-images" -cache "$out/debs" >/dev/null

# A short work dir: the CRI socket path must fit in sun_path.
work=$(mktemp -d /tmp/crm-ct.XXXXXX)
# The daemon's root dir is below: the root of a pod with a user namespace is no one on the
# host and must pass through every directory above its rootfs (as through /var/lib).
chmod 0711 "$work"
registry_pid=""
daemon_pid=""
bridge=crm-ct0
subnet=10.236.0.0/24
# cribench's CNI floor (the plugins alone) runs on a bridge and subnet of its own.
floor_bridge=crm-ctf0
floor_subnet=10.236.1.0/24

cleanup() {
	local rc=$?
	set +e
	if [[ -n $daemon_pid ]]; then
		# Pods that failed specs left behind: remove them through the daemon so that CNI DEL
		# releases their IPs and iptables rules.
		CONTAINER_RUNTIME_ENDPOINT="unix://$work/c.sock" "$bin/crictl" rmp -fa >/dev/null 2>&1
		kill -TERM "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	if [[ -n $registry_pid ]]; then
		kill -TERM "$registry_pid" 2>/dev/null
		wait "$registry_pid" 2>/dev/null
	fi
	# Pods that critest left behind: their namespace pins and /dev/shm mounts live under the
	# work dir. Unmount deepest first, then drop the test bridge.
	findmnt -rn -o TARGET | grep "^$work/" | sort -r | while read -r m; do umount -l "$m"; done
	ip link del "$bridge" 2>/dev/null
	ip link del "$floor_bridge" 2>/dev/null
	if [[ ${CRITEST_KEEP:-0} == 1 ]]; then
		log "work dir kept: $work"
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT

# The registry.
"$bin/testregistry" -images "$out/test-images" -addr 127.0.0.1:0 -port-file "$work/registry.port" \
	>"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do [[ -s $work/registry.port ]] && break; sleep 0.1; done
[[ -s $work/registry.port ]] || { log "registry did not start"; cat "$work/registry.log" >&2; exit 1; }
port=$(cat "$work/registry.port")
for host in registry.k8s.io gcr.io docker.io public.ecr.aws; do
	mkdir -p "$work/certs.d/$host"
	cat >"$work/certs.d/$host/hosts.toml" <<TOML
server = "https://$host"

[host."http://127.0.0.1:$port"]
  capabilities = ["pull", "resolve"]
TOML
done

# The network: a bridge and subnet that only this harness uses.
mkdir -p "$work/net.d"
# host-local keeps its leases in the work dir, so nothing of a run outlives it.
sed -e "s/\"cri-mini0\"/\"$bridge\"/" -e "s#10.88.0.0/16#$subnet#" -e 's/"cri-mini"/"critest"/' \
	-e "s#\"type\": \"host-local\",#\"type\": \"host-local\", \"dataDir\": \"$work/ipam\",#" \
	hack/cni/10-cri-mini.conflist >"$work/net.d/10-critest.conflist"
if [[ ${CRITEST_NFTABLES:-0} == 1 ]]; then
	sed -i -e 's/"ipMasqBackend": "iptables"/"ipMasqBackend": "nftables"/' \
		-e 's/"backend": "iptables"/"backend": "nftables"/' "$work/net.d/10-critest.conflist"
	grep -q '"backend": "nftables"' "$work/net.d/10-critest.conflist" || { log "CRITEST_NFTABLES: conflist not rewritten"; exit 1; }
fi

cat >"$work/config.toml" <<TOML
listen = "$work/c.sock"
root = "$work/root"
state = "$work/state"
[cni]
conf_dir = "$work/net.d"
bin_dirs = ["$repo/$out/cni/bin"]
[registry]
config_path = "$work/certs.d"
TOML

"$CRI_MINI_BIN" --config "$work/config.toml" -v=2 >"$work/cri-mini.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 200); do [[ -S $work/c.sock ]] && break; sleep 0.05; done
[[ -S $work/c.sock ]] || { log "cri-mini did not start"; cat "$work/cri-mini.log" >&2; exit 1; }

endpoint="unix://$work/c.sock"
reports=$out/critest
mkdir -p "$reports"
export PATH="$repo/$bin:$PATH"

if [[ $benchmark == 1 ]]; then
	rm -rf "$reports/benchmark"
	mkdir -p "$reports/benchmark"
	# A failing benchmark spec stops the whole run: CRITEST_BENCH_SKIP (a regex) leaves
	# specs out while one is being worked on.
	bench_skip=${CRITEST_BENCH_SKIP:-}
	# Memory first, while the daemon is fresh: its idle figure, then 10 idle pods.
	"$bin/cribench" -endpoint "$endpoint" -daemon-pid "$daemon_pid" -pods 10 podmem
	critest -runtime-endpoint "$endpoint" -image-endpoint "$endpoint" -benchmark \
		-benchmarking-output-dir "$repo/$reports/benchmark" -ginkgo.no-color \
		-benchmarking-params-file "$repo/$here/benchmark-params.yaml" \
		${bench_skip:+-ginkgo.skip "$bench_skip"} "$@" >"$reports/benchmark.log" 2>&1 ||
		log "critest -benchmark reported failures, see $reports/benchmark.log"
	"$bin/benchsummary" "$reports/benchmark" || log "no critest benchmark results"
	# CreatePod/StopPod above next to the CNI floor: the same conflist's ADD and DEL alone.
	# TMPDIR: the floor's namespace pins live under the work dir, which cleanup unmounts.
	TMPDIR="$work" "$bin/cribench" -endpoint "$endpoint" -n 20 -cni-conf "$work/net.d/10-critest.conflist" \
		-cni-bin "$repo/$out/cni/bin" -floor-bridge "$floor_bridge" -floor-subnet "$floor_subnet" sandbox
	"$bin/cribench" -endpoint "$endpoint" -n 20 -crictl "$bin/crictl" lifecycle
	"$bin/cribench" -endpoint "$endpoint" -n 20 lifecycle-cri
	"$bin/cribench" -endpoint "$endpoint" -n 20 -userns lifecycle-cri
	"$bin/cribench" -endpoint "$endpoint" -n 10 images
	exit 0
fi

log "running critest (parallel $parallel) against $endpoint"
set +e
critest -runtime-endpoint "$endpoint" -image-endpoint "$endpoint" -parallel "$parallel" \
	-ginkgo.no-color -ginkgo.junit-report "$repo/$reports/junit.xml" "$@" >"$reports/critest.log" 2>&1
critest_rc=$?
check_rc=0
"$bin/junitcheck" -junit "$reports/junit.xml" -expected "$here/expected-failures.txt" || check_rc=$?
# A full run also runs the streaming specs over WebSocket (what kubectl and crictl use
# since Kubernetes 1.31/1.36), against the same daemon. CRITEST_WEBSOCKET=0 skips it.
if [[ $# == 0 && ${CRITEST_WEBSOCKET:-1} == 1 ]]; then
	log "running the Streaming specs over WebSocket"
	critest -runtime-endpoint "$endpoint" -image-endpoint "$endpoint" -parallel "$parallel" \
		-ginkgo.no-color -ginkgo.focus=Streaming -websocket-exec -websocket-attach -websocket-portforward \
		-ginkgo.junit-report "$repo/$reports/junit-websocket.xml" >"$reports/critest-websocket.log" 2>&1
	log "critest over WebSocket exited $?; log in $reports/critest-websocket.log"
	"$bin/junitcheck" -junit "$reports/junit-websocket.xml" -expected "$here/expected-failures.txt" || check_rc=$?
fi
set -e
cp "$work/cri-mini.log" "$reports/cri-mini.log"
log "critest exited $critest_rc; log in $reports/critest.log, daemon log in $reports/cri-mini.log"
exit $check_rc
