#!/usr/bin/env bash
# Builds the CNI plugins cri-mini's default network uses (bridge, host-local,
# loopback, portmap) from the github.com/containernetworking/plugins version
# pinned in go.mod, statically (CGO_ENABLED=0), into _output/cni/bin, then
# installs them into DEST (default /opt/cni/bin) where missing or different.
#
# Usage: hack/build-cni-plugins.sh [DEST]     (DEST "" builds only)
#   CNI_PLUGINS="bridge portmap" restricts the set (default: all four).
#   FORCE=1 rebuilds even when the stamp matches.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

# An explicit empty DEST ("") only builds.
DEST="${1-/opt/cni/bin}"
BIN_DIR="${OUTPUT_DIR}/cni/bin"
MODULE="github.com/containernetworking/plugins"
read -r -a PLUGINS <<<"${CNI_PLUGINS:-bridge host-local loopback portmap}"

# Where each plugin lives inside the module.
plugin_pkg() {
	case "$1" in
	bridge | loopback | ipvlan | macvlan | ptp | host-device | vlan | dummy | tap)
		echo "${MODULE}/plugins/main/$1"
		;;
	host-local | static | dhcp) echo "${MODULE}/plugins/ipam/$1" ;;
	portmap | bandwidth | firewall | tuning | sbr) echo "${MODULE}/plugins/meta/$1" ;;
	*) die "unknown CNI plugin: $1" ;;
	esac
}

require_go
VERSION="$(go_mod_version "${MODULE}")"
GO_VERSION="$(go env GOVERSION)"
STAMP_NAME="cni-plugins"
STAMP="module=${MODULE}@${VERSION} go=${GO_VERSION} plugins=${PLUGINS[*]}"

built=1
for p in "${PLUGINS[@]}"; do
	[[ -x "${BIN_DIR}/${p}" ]] || built=0
done

if [[ "${FORCE:-0}" != 1 ]] && [[ "${built}" == 1 ]] && stamp_matches "${STAMP_NAME}" "${STAMP}"; then
	log "CNI plugins ${VERSION} already built in ${BIN_DIR#"${REPO_ROOT}/"}"
else
	log "building CNI plugins ${PLUGINS[*]} from ${MODULE}@${VERSION} (${GO_VERSION})"
	pkgs=()
	for p in "${PLUGINS[@]}"; do
		pkgs+=("$(plugin_pkg "${p}")@${VERSION}")
	done
	mkdir -p "${BIN_DIR}"
	start=${SECONDS}
	# `go install pkg@version` builds in module mode from the plugins' own
	# go.mod, outside (and unaffected by) our module, with every dependency
	# coming from the module proxy. GOWORK=off keeps a go.work of the caller
	# out of it. The BuildVersion flag is what the plugins print for VERSION
	# and in their --help; upstream's build_linux.sh sets it the same way.
	# -trimpath keeps paths of this machine out of the binaries.
	GOBIN="${BIN_DIR}" GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
		go install \
		-ldflags "-s -w -X ${MODULE}/pkg/utils/buildversion.BuildVersion=${VERSION}" \
		"${pkgs[@]}" ||
		die "building CNI plugins from ${MODULE}@${VERSION} failed"
	stamp_write "${STAMP_NAME}" "${STAMP}"
	log "built in $((SECONDS - start))s into ${BIN_DIR#"${REPO_ROOT}/"}"
fi

if [[ -n "${DEST}" ]]; then
	mkdir -p "${DEST}" 2>/dev/null || die "cannot create ${DEST}: run as root or pass a writable DEST"
	for p in "${PLUGINS[@]}"; do
		result="$(install_if_changed "${BIN_DIR}/${p}" "${DEST}/${p}")"
		log "${DEST}/${p}: ${result}"
	done
fi
