#!/usr/bin/env bash
# Builds and installs the CNI plugins (hack/build-cni-plugins.sh) and, when
# the CNI configuration directory holds no network yet, installs cri-mini's
# default network hack/cni/10-cri-mini.conflist there. An existing
# configuration is never touched: it belongs to whoever set the node up.
#
# Usage: hack/install-cni.sh [--conf-dir DIR] [--bin-dir DIR]
#   defaults: --conf-dir /etc/cni/net.d --bin-dir /opt/cni/bin
#
# See hack/cni/README.md for what the default network does and why the
# loopback plugin is not part of it.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

CONF_DIR=/etc/cni/net.d
BIN_DIR=/opt/cni/bin

usage() {
	sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	--conf-dir)
		[[ $# -ge 2 ]] || usage
		CONF_DIR="$2"
		shift 2
		;;
	--conf-dir=*)
		CONF_DIR="${1#*=}"
		shift
		;;
	--bin-dir)
		[[ $# -ge 2 ]] || usage
		BIN_DIR="$2"
		shift 2
		;;
	--bin-dir=*)
		BIN_DIR="${1#*=}"
		shift
		;;
	-h | --help) usage ;;
	*)
		warn "unknown argument: $1"
		usage
		;;
	esac
done

"${REPO_ROOT}/hack/build-cni-plugins.sh" "${BIN_DIR}"

DEFAULT_CONF="${REPO_ROOT}/hack/cni/10-cri-mini.conflist"
mkdir -p "${CONF_DIR}" || die "cannot create ${CONF_DIR}"

# libcni loads *.conf, *.conflist and *.json; any of them means the
# directory already describes a network.
shopt -s nullglob
existing=("${CONF_DIR}"/*.conf "${CONF_DIR}"/*.conflist "${CONF_DIR}"/*.json)
shopt -u nullglob
if [[ ${#existing[@]} -gt 0 ]]; then
	log "${CONF_DIR} already has a network configuration (${existing[*]##*/}): left as is"
	exit 0
fi

dst="${CONF_DIR}/$(basename "${DEFAULT_CONF}")"
# Write under a name libcni ignores, then rename: a runtime watching the
# directory never loads a half-written file.
install -m 0644 "${DEFAULT_CONF}" "${dst}.tmp.$$"
mv -f "${dst}.tmp.$$" "${dst}"
log "installed the default network configuration ${dst}"
