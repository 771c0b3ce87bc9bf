#!/usr/bin/env bash
# Builds kubelet into _output/bin/kubelet for the kubelet e2e test
# (test/e2e/kubelet_test.go), from the k8s.io/kubernetes module on the Go
# module proxy.
#
# Usage: hack/build-kubelet.sh
#   KUBELET_VERSION (default v1.34.4) picks the Kubernetes release. 1.34 is the
#   newest release whose kubelet still runs on cgroup v1 by default.
#   FORCE=1 rebuilds even when the stamp matches.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, client-go, ...)
# as v0.0.0 and replaces them with ./staging/... in its own go.mod. A module
# that depends on it does not inherit those replaces, so the build module made
# here replaces each with its published version: v0.X.Y for Kubernetes v1.X.Y.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

case "${1:-}" in
"") ;;
-h | --help)
	sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 0
	;;
*) die "unknown argument: $1 (usage: $0)" ;;
esac

KUBE_MODULE="k8s.io/kubernetes"
KUBELET_VERSION="${KUBELET_VERSION:-v1.34.4}"
BIN_DIR="${OUTPUT_DIR}/bin"

require_go
[[ "${KUBELET_VERSION}" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] ||
	die "KUBELET_VERSION must look like v1.X.Y, got ${KUBELET_VERSION}"
STAGING_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

export GOWORK=off CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath -mod=mod"

STAMP_NAME="kubelet"
# The recipe is this script: a change to it rebuilds too.
STAMP="kubelet=${KUBELET_VERSION} go=$(go env GOVERSION) recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"

# version_ok: the binary runs and says it is KUBELET_VERSION.
version_ok() {
	local out
	out="$("${BIN_DIR}/kubelet" --version 2>&1)" && [[ "${out}" == *"${KUBELET_VERSION}" ]]
}

if [[ "${FORCE:-0}" != 1 && -x "${BIN_DIR}/kubelet" ]] && stamp_matches "${STAMP_NAME}" "${STAMP}" && version_ok; then
	log "kubelet ${KUBELET_VERSION} already built"
	exit 0
fi

start=${SECONDS}
mkdir -p "${BIN_DIR}"
WORK="$(mktemp -d "${OUTPUT_DIR}/kubelet-build.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT
cd "${WORK}"

log "downloading ${KUBE_MODULE}@${KUBELET_VERSION}"
# With -json, go mod download reports its errors in the JSON on stdout.
json="$(go mod download -json "${KUBE_MODULE}@${KUBELET_VERSION}")" ||
	die "go mod download ${KUBE_MODULE}@${KUBELET_VERSION} failed: ${json}"
dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"${json}")"
[[ -n "${dir}" && -f "${dir}/go.mod" ]] || die "go mod download ${KUBE_MODULE}@${KUBELET_VERSION} gave no source directory: ${json}"

staging="$(sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "${dir}/go.mod" | sort -u)"
[[ -n "${staging}" ]] || die "no staging modules (k8s.io/... v0.0.0) in ${KUBE_MODULE}'s go.mod"
{
	printf 'module kubeletbuild\n\ngo %s\n\nrequire %s %s\n\nreplace (\n' \
		"$(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')" "${KUBE_MODULE}" "${KUBELET_VERSION}"
	for m in ${staging}; do
		printf '\t%s => %s %s\n' "${m}" "${m}" "${STAGING_VERSION}"
	done
	printf ')\n'
	# The runtime behaviour upstream builds kubelet with (its go.mod's godebug line).
	grep '^godebug ' "${dir}/go.mod" || true
} >go.mod
# kubelet's own main, which lives in package main of cmd/kubelet and cannot be imported.
cat >main.go <<'GO'
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
GO

log "resolving kubelet's dependencies"
go mod tidy >/dev/null 2>"${WORK}/tidy.log" || {
	cat "${WORK}/tidy.log" >&2
	die "go mod tidy failed"
}
log "building kubelet ${KUBELET_VERSION} (several minutes on 2 cores)"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${KUBELET_VERSION}"
go build -ldflags "${ldflags}" -o "${WORK}/kubelet" . || die "building kubelet failed"
mv -f "${WORK}/kubelet" "${BIN_DIR}/kubelet"
stamp_write "${STAMP_NAME}" "${STAMP}"
log "built kubelet ${KUBELET_VERSION} in $((SECONDS - start))s"
cd "${REPO_ROOT}"
version_ok || die "kubelet --version does not say ${KUBELET_VERSION}: $("${BIN_DIR}/kubelet" --version 2>&1)"
log "${BIN_DIR#"${REPO_ROOT}/"}/kubelet: $("${BIN_DIR}/kubelet" --version)"
