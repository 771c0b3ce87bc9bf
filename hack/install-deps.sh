#!/usr/bin/env bash
# Installs the Debian packages cri-mini needs at run and test time, selects
# the iptables variant the CNI plugins use, and loads the kernel modules the
# runtime relies on. Idempotent: apt runs only when a package is missing.
#
# Usage: hack/install-deps.sh          (as root)
#   EXTRA_PACKAGES="a b" adds packages to the list below.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

# Why each package is here. cri-mini itself is one static Go binary; these
# are what its CNI plugins, its tests and the tool builds run.
PACKAGES=(
	iptables        # CNI bridge ipMasq and portmap program NAT through the iptables binary
	iproute2        # ip netns/link/addr in tests and for debugging pod networking
	iputils-ping    # tests ping a pod's gateway and pods from the host
	ca-certificates # TLS roots for image pulls from registries
	util-linux      # mount, nsenter, unshare, findmnt used by tests
	procps          # ps, pgrep, sysctl used by tests
	kmod            # modprobe, for the kernel modules below on a modular kernel
	make            # make run / make test
	git             # build metadata; go uses it for VCS stamping when enabled
	dpkg-dev        # test image builds: unpacking Debian packages into image layers
	busybox-static  # root tests of pkg/runtime run a static busybox as the container process
	apt             # test image builds: apt-get download of static binaries
)
read -r -a extra <<<"${EXTRA_PACKAGES:-}"
PACKAGES+=("${extra[@]}")

# Kernel features: overlay (container rootfs), bridge + veth (CNI bridge),
# br_netfilter (bridged pod traffic seen by iptables: hairpin hostPorts),
# nf_nat/nf_conntrack (ipMasq, portmap DNAT).
MODULES=(overlay bridge br_netfilter veth nf_nat nf_conntrack)

require_root "installing packages and loading kernel modules"

missing=()
for p in "${PACKAGES[@]}"; do
	status="$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null || true)"
	[[ "${status}" == "install ok installed" ]] || missing+=("${p}")
done

if [[ ${#missing[@]} -eq 0 ]]; then
	log "all ${#PACKAGES[@]} Debian packages already installed"
else
	log "installing ${missing[*]}"
	# Another apt on the machine holds the dpkg lock for a while: wait for
	# it instead of failing at once.
	apt_opts=(-o DPkg::Lock::Timeout=300 -y -q)
	export DEBIAN_FRONTEND=noninteractive
	apt-get "${apt_opts[@]}" update >/dev/null || die "apt-get update failed"
	apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"
fi

# iptables variant: the CNI plugins (bridge ipMasq, portmap) call the
# `iptables` binary through go-iptables. Debian 12 ships both iptables-nft
# (the default alternative) and iptables-legacy. We keep iptables-nft:
#   - this kernel (6.18) still has the legacy x_tables backend, and both
#     variants passed the same check here (bridge + portmap ADD, hostPort from
#     127.0.0.1, from the host address and hairpin from the pod, DEL leaving
#     no rule), so correctness does not decide;
#   - new kernels can be built without the legacy backend (this one's
#     config has the switch, CONFIG_NETFILTER_XTABLES_LEGACY), while
#     nf_tables with nft_compat, which iptables-nft uses for the matches
#     portmap needs (addrtype, comment, multiport, mark), is the maintained
#     path;
#   - the two variants must not be mixed on one host: rules of the other
#     variant are invisible to the plugins, so whatever else programs the
#     host (kube-proxy, a firewall) must use the same one. We only switch the
#     alternative when it points somewhere that does not work.
select_iptables() {
	local current
	current="$(readlink -f "$(command -v iptables)" 2>/dev/null || true)"
	if iptables -t nat -S >/dev/null 2>&1; then
		log "iptables: $(iptables --version) works (${current##*/})"
		return 0
	fi
	warn "iptables ($(iptables --version 2>&1)) cannot list the nat table"
	local alt
	for alt in /usr/sbin/iptables-nft /usr/sbin/iptables-legacy; do
		[[ -x "${alt}" ]] || continue
		if "${alt}" -t nat -S >/dev/null 2>&1; then
			update-alternatives --set iptables "${alt}" >/dev/null
			update-alternatives --set ip6tables "${alt/iptables/ip6tables}" >/dev/null 2>&1 || true
			log "iptables: switched to ${alt##*/}: $(iptables --version)"
			return 0
		fi
	done
	die "no iptables variant can use the nat table on this kernel: pod networking would fail"
}
select_iptables
if [[ "$(readlink -f "$(command -v iptables)")" != *legacy* ]] && command -v iptables-legacy-save >/dev/null 2>&1 &&
	grep -q -- '^-A' <(iptables-legacy-save 2>/dev/null); then
	warn "iptables-legacy also holds rules: both variants are in use on this host, and the plugins see only one"
fi

# Kernel modules. A module can be loaded already, built into the kernel, or
# missing; only the last is worth a warning, and none stops the script: the
# runtime reports precisely what fails when it needs it.
module_present() {
	local m="$1" krel
	krel="$(uname -r)"
	[[ -d "/sys/module/${m}" ]] && return 0
	[[ -f "/lib/modules/${krel}/modules.builtin" ]] &&
		grep -q "/${m}.ko" "/lib/modules/${krel}/modules.builtin" && return 0
	# Built-in modules without parameters have no /sys/module entry; these
	# checks see the feature itself.
	case "${m}" in
	overlay) grep -qw overlay /proc/filesystems ;;
	br_netfilter) [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ;;
	bridge | veth) kernel_config_has "CONFIG_${m^^}" ;;
	nf_nat) kernel_config_has CONFIG_NF_NAT ;;
	nf_conntrack) [[ -e /proc/sys/net/netfilter/nf_conntrack_max ]] ;;
	*) return 1 ;;
	esac
}

kernel_config_has() {
	local sym="$1" cfg
	for cfg in /proc/config.gz "/boot/config-$(uname -r)"; do
		[[ -r "${cfg}" ]] || continue
		# grep -q reads from a process substitution, not a pipe: with
		# pipefail, zcat killed by SIGPIPE would fail a successful match.
		if [[ "${cfg}" == *.gz ]]; then
			grep -qE "^${sym}=[ym]$" <(zcat "${cfg}") && return 0
		else
			grep -qE "^${sym}=[ym]$" "${cfg}" && return 0
		fi
	done
	return 1
}

for m in "${MODULES[@]}"; do
	if module_present "${m}"; then
		log "kernel module ${m}: present"
	elif command -v modprobe >/dev/null 2>&1 && modprobe "${m}" 2>/dev/null; then
		log "kernel module ${m}: loaded"
	else
		warn "kernel module ${m}: not available (not built in and modprobe failed)"
	fi
done

# br_netfilter only matters when bridged traffic goes through iptables;
# Kubernetes requires it (kubeadm's preflight checks it), and portmap's
# hairpin (a pod reaching its own hostPort) relies on it.
if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
	if [[ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)" != 1 ]]; then
		echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
		log "set net.bridge.bridge-nf-call-iptables=1"
	fi
fi

# The Go toolchain comes with the machine (Debian 12's golang is too old for
# go.mod); check it early so the builds below fail with a clear message.
if command -v go >/dev/null 2>&1; then
	want="$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)"
	log "go: $(go env GOVERSION) (go.mod wants go ${want}; newer toolchains come through GOTOOLCHAIN)"
else
	warn "go is not installed: install Go ${want:-from go.mod} before make"
fi
log "done"
