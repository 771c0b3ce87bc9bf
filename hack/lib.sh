#!/usr/bin/env bash
# Shared helpers for the hack/ scripts. Source it; it defines functions and a
# few read-only variables, and changes nothing on the machine by itself.
#
# Every script that sources this file works from any cwd: REPO_ROOT is
# derived from this file's own location, and scripts cd there.

# shellcheck disable=SC2034 # the variables are used by the sourcing scripts.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
OUTPUT_DIR="${REPO_ROOT}/_output"
STAMP_DIR="${OUTPUT_DIR}/stamps"

# The calling script's name, used as the prefix of every message so that the
# output of `make run` says which step printed what.
HACK_SCRIPT="$(basename "${0}")"

log() { printf '[%s] %s\n' "${HACK_SCRIPT}" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "${HACK_SCRIPT}" "$*" >&2; }
die() {
	printf '[%s] ERROR: %s\n' "${HACK_SCRIPT}" "$*" >&2
	exit 1
}

require_root() {
	[[ "$(id -u)" -eq 0 ]] || die "must run as root ($1)"
}

require_go() {
	command -v go >/dev/null 2>&1 || die "go not found in PATH: install the Go toolchain named in go.mod first"
}

# go_mod_version MODULE prints the version of MODULE pinned in the
# repository's go.mod, so that the tools are always built from the same
# version the project's code compiles against.
go_mod_version() {
	local v
	v="$(cd "${REPO_ROOT}" && go list -m -f '{{.Version}}' "$1")" ||
		die "cannot read the version of $1 from go.mod"
	[[ -n "${v}" ]] || die "module $1 is not required by go.mod"
	printf '%s\n' "${v}"
}

# A stamp records what produced an output (versions, flags); when the stamp
# of a step matches, the step is skipped. The content is compared whole, so a
# change of any input (Go version, pinned version, plugin list) rebuilds.
stamp_matches() {
	local name="$1" want="$2"
	[[ -f "${STAMP_DIR}/${name}" ]] && [[ "$(cat "${STAMP_DIR}/${name}")" == "${want}" ]]
}

stamp_write() {
	local name="$1" content="$2"
	mkdir -p "${STAMP_DIR}"
	printf '%s\n' "${content}" >"${STAMP_DIR}/${name}.tmp"
	mv -f "${STAMP_DIR}/${name}.tmp" "${STAMP_DIR}/${name}"
}

# install_if_changed SRC DST installs SRC as DST (mode 0755) only when DST is
# missing or differs. It copies to a temporary name and renames, so that a
# plugin that is being executed while we update it is never seen half-written
# (and "text file busy" cannot happen). Prints "installed" or "unchanged".
install_if_changed() {
	local src="$1" dst="$2"
	if [[ -f "${dst}" ]] && cmp -s "${src}" "${dst}"; then
		echo unchanged
		return 0
	fi
	mkdir -p "$(dirname "${dst}")"
	install -m 0755 "${src}" "${dst}.tmp.$$"
	mv -f "${dst}.tmp.$$" "${dst}"
	echo installed
}
