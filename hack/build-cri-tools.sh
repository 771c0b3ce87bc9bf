#!/usr/bin/env bash
# Builds the CRI test tools into _output/bin:
#   crictl   sigs.k8s.io/cri-tools/cmd/crictl
#   critest  sigs.k8s.io/cri-tools/cmd/critest (a `go test -c` binary)
#   ginkgo   the ginkgo CLI, which `critest -parallel N` runs; its version is
#            the ginkgo library version cri-tools requires, because in a
#            parallel run the CLI and the suite talk a private protocol and
#            ginkgo only promises it works when both versions are equal.
#
# Usage: hack/build-cri-tools.sh [--install]
#   --install  also installs crictl into /usr/local/bin (only if different;
#              CRICTL_INSTALL_DIR overrides the directory).
#   CRI_TOOLS_VERSION (default v1.34.0) picks the cri-tools release.
#   FORCE=1 rebuilds even when the stamp matches.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

INSTALL=0
for arg in "$@"; do
	case "${arg}" in
	--install) INSTALL=1 ;;
	-h | --help)
		sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
		exit 0
		;;
	*) die "unknown argument: ${arg} (usage: $0 [--install])" ;;
	esac
done

CRI_TOOLS_MODULE="sigs.k8s.io/cri-tools"
CRI_TOOLS_VERSION="${CRI_TOOLS_VERSION:-v1.34.0}"
GINKGO_MODULE="github.com/onsi/ginkgo/v2"
BIN_DIR="${OUTPUT_DIR}/bin"
INSTALL_DIR="${CRICTL_INSTALL_DIR:-/usr/local/bin}"

require_go

# The checksum database has no entry for this cri-tools tag, so verification
# against it is switched off for that one module only; every other module is
# still checked against go.sum and the checksum database.
export GONOSUMDB="${GONOSUMDB:+${GONOSUMDB},}${CRI_TOOLS_MODULE}"
# The tools are built in module mode from their own go.mod, never from ours
# or from a go.work the caller may have.
export GOWORK=off CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath"

GO_VERSION="$(go env GOVERSION)"
STAMP_NAME="cri-tools"
STAMP="cri-tools=${CRI_TOOLS_VERSION} go=${GO_VERSION}"

verify() {
	local out
	out="$("${BIN_DIR}/crictl" --version 2>&1)" || die "crictl --version failed: ${out}"
	[[ "${out}" == *"${CRI_TOOLS_VERSION}"* ]] ||
		die "crictl --version says '${out}', want ${CRI_TOOLS_VERSION}"
	"${BIN_DIR}/critest" --help >/dev/null 2>&1 || die "critest --help failed"
	out="$("${BIN_DIR}/ginkgo" version 2>&1)" || die "ginkgo version failed: ${out}"
	# ginkgo logs a GOMAXPROCS line first; the version is the last line.
	out="${out##*$'\n'}"
	log "${BIN_DIR#"${REPO_ROOT}/"}: $("${BIN_DIR}/crictl" --version), critest ok, ${out}"
}

have_all=1
for b in crictl critest ginkgo; do
	[[ -x "${BIN_DIR}/${b}" ]] || have_all=0
done

if [[ "${FORCE:-0}" != 1 ]] && [[ "${have_all}" == 1 ]] && stamp_matches "${STAMP_NAME}" "${STAMP}"; then
	log "cri-tools ${CRI_TOOLS_VERSION} already built"
else
	start=${SECONDS}
	mkdir -p "${OUTPUT_DIR}" "${BIN_DIR}"
	WORK="$(mktemp -d "${OUTPUT_DIR}/cri-tools-build.XXXXXX")"
	trap 'rm -rf "${WORK}"' EXIT

	log "downloading ${CRI_TOOLS_MODULE}@${CRI_TOOLS_VERSION}"
	# Run from the empty work dir, outside any module, so that the download
	# cannot touch our go.mod/go.sum.
	dir="$(cd "${WORK}" && go mod download -json "${CRI_TOOLS_MODULE}@${CRI_TOOLS_VERSION}" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	[[ -n "${dir}" && -d "${dir}" ]] ||
		die "go mod download ${CRI_TOOLS_MODULE}@${CRI_TOOLS_VERSION} gave no source directory"

	# The module cache is read-only; go test -c and go build want to be run
	# inside the module, so build from a writable copy.
	src="${WORK}/cri-tools"
	cp -R "${dir}" "${src}"
	chmod -R u+w "${src}"

	# Module zips normally carry no vendor/ directory (cri-tools v1.34.0's
	# does not); use it when a release does ship one.
	modflag=-mod=mod
	if [[ -f "${src}/vendor/modules.txt" ]]; then
		modflag=-mod=vendor
	fi

	ginkgo_version="$(cd "${src}" && go list ${modflag} -m -f '{{.Version}}' "${GINKGO_MODULE}")" ||
		die "cannot read the ginkgo version required by cri-tools"

	ldflags="-s -w -X ${CRI_TOOLS_MODULE}/pkg/version.Version=${CRI_TOOLS_VERSION}"
	log "building crictl (${modflag})"
	(cd "${src}" && go build ${modflag} -ldflags "${ldflags}" -o "${WORK}/crictl" ./cmd/crictl) ||
		die "building crictl failed"
	log "building critest (go test -c; the slow one)"
	(cd "${src}" && go test -c ${modflag} -ldflags "${ldflags}" -o "${WORK}/critest" ./cmd/critest) ||
		die "building critest failed"
	log "building the ginkgo CLI ${ginkgo_version}"
	(cd "${WORK}" && GOBIN="${WORK}" go install -ldflags "-s -w" "${GINKGO_MODULE}/ginkgo@${ginkgo_version}") ||
		die "building ginkgo ${ginkgo_version} failed"

	# Move into place only once all three built, so a failed run never
	# leaves a mix of versions behind a stale stamp.
	for b in crictl critest ginkgo; do
		mv -f "${WORK}/${b}" "${BIN_DIR}/${b}"
	done
	# The ginkgo version follows from the cri-tools version, so the stamp
	# needs only the latter.
	stamp_write "${STAMP_NAME}" "${STAMP}"
	log "built cri-tools ${CRI_TOOLS_VERSION} and ginkgo ${ginkgo_version} in $((SECONDS - start))s"
fi

verify

if [[ "${INSTALL}" == 1 ]]; then
	mkdir -p "${INSTALL_DIR}" 2>/dev/null || die "cannot create ${INSTALL_DIR}: run as root"
	log "${INSTALL_DIR}/crictl: $(install_if_changed "${BIN_DIR}/crictl" "${INSTALL_DIR}/crictl")"
fi
