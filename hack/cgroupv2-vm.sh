#!/usr/bin/env bash
# Runs cri-mini's root tests on a cgroup v2 machine: a Debian kernel booted under QEMU (TCG, no
# KVM needed) with an initramfs that holds busybox, the static cri-mini binary, static Go test
# binaries and the test images. The guest's init mounts cgroup2 at /sys/fs/cgroup (all
# controllers), switches to a tmpfs root (pivot_root refuses the initramfs) and runs the tests;
# the host reads their output from the serial console.
#
# Usage: hack/cgroupv2-vm.sh [-run REGEX] [-pkgs "PKG..."] [-timeout SECONDS] [-mem MIB]
#   -run      the e2e tests to run in the guest (go test -run syntax; default: VM_E2E_RUN below)
#   -pkgs     packages whose unit tests run in the guest as well (default: ./pkg/cgroups ./pkg/overlay)
# Output: the guest console in _output/vm/console.log; exit 0 only when every test binary
# passed in the guest. Needs root (apt for qemu and the kernel package on first use).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

# The e2e tests that check isolation and limits from inside a container; with
# CRI_MINI_E2E_HOST_NETWORK they use host-network
# pods so that the guest needs no CNI plugins and no iptables.
VM_E2E_RUN='TestContainerSecurity|TestContainerSeccomp|TestContainerResources|TestContainerOOMKilled'
run_regex="${VM_E2E_RUN}"
unit_pkgs="./pkg/cgroups ./pkg/overlay"
timeout_s=900
mem_mib=2048
while [[ $# -gt 0 ]]; do
	case "$1" in
	-run) run_regex="$2"; shift 2 ;;
	-pkgs) unit_pkgs="$2"; shift 2 ;;
	-timeout) timeout_s="$2"; shift 2 ;;
	-mem) mem_mib="$2"; shift 2 ;;
	*) die "unknown argument $1 (see the usage at the top of $0)" ;;
	esac
done

require_root "installing qemu and booting a test VM"
require_go

vm="${OUTPUT_DIR}/vm"
mkdir -p "${vm}"

# QEMU and busybox from Debian. TCG is used: it needs no /dev/kvm and behaves the same on
# every machine the tests run on.
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v cpio >/dev/null 2>&1 || [[ ! -x /bin/busybox ]]; then
	log "installing qemu-system-x86, cpio and busybox-static"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-x86 cpio busybox-static >/dev/null
fi

# The kernel: Debian's current linux-image-amd64, unpacked once (stamped by its version).
kpkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
[[ -n "${kpkg}" ]] || die "cannot resolve the kernel package behind linux-image-amd64"
if ! stamp_matches vm-kernel "${kpkg}" || [[ ! -d "${vm}/kernel/lib/modules" ]]; then
	log "downloading ${kpkg}"
	rm -rf "${vm}/kernel" "${vm}/deb"
	mkdir -p "${vm}/deb"
	(cd "${vm}/deb" && apt-get download "${kpkg}" >/dev/null 2>&1) || die "apt-get download ${kpkg} failed"
	dpkg-deb -x "${vm}"/deb/*.deb "${vm}/kernel"
	rm -rf "${vm}/deb"
	stamp_write vm-kernel "${kpkg}"
fi
kver="$(ls "${vm}/kernel/lib/modules")"
vmlinuz="${vm}/kernel/boot/vmlinuz-${kver}"
[[ -f "${vmlinuz}" ]] || die "no kernel image at ${vmlinuz}"

# The test images the e2e tests pull from (built by the critest harness).
if [[ ! -f "${OUTPUT_DIR}/test-images/index.json" ]]; then
	log "building the test images"
	go build -o "${OUTPUT_DIR}/bin/" ./test/critest/testimages
	"${OUTPUT_DIR}/bin/testimages" -out "${OUTPUT_DIR}/test-images" -cache "${OUTPUT_DIR}/debs" >/dev/null
fi

# The initramfs.
root="${vm}/initramfs"
rm -rf "${root}"
mkdir -p "${root}"/{bin,sbin,proc,sys,dev,tmp,run,etc,mnt,newroot,var/lib,modules,tests,root}
cp /bin/busybox "${root}/bin/busybox"
log "building static binaries"
CGO_ENABLED=0 go build -trimpath -o "${root}/bin/cri-mini" ./cmd/cri-mini
CGO_ENABLED=0 go test -c -o "${root}/tests/e2e.test" ./test/e2e
n=0
for p in ${unit_pkgs}; do
	CGO_ENABLED=0 go test -c -o "${root}/tests/unit-${n}.test" "${p}"
	n=$((n + 1))
done
cp -a "${OUTPUT_DIR}/test-images" "${root}/test-images"
# overlay is the only module the tests need (host-network pods: no veth, no bridge).
for m in overlay; do
	f="$(find "${vm}/kernel/lib/modules/${kver}" -name "${m}.ko*" | head -n1)"
	[[ -n "${f}" ]] || die "module ${m} not in ${kpkg}"
	cp "${f}" "${root}/modules/"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"${root}/etc/passwd"
printf 'root:x:0:\n' >"${root}/etc/group"

cat >"${root}/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# pivot_root(2) refuses a root on the initramfs: move everything to a tmpfs and switch to it.
if [ "\$1" != stage2 ]; then
	mount -t tmpfs -o size=80% tmpfs /newroot
	for d in bin sbin etc modules tests test-images root init; do cp -a /\$d /newroot/; done
	mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/var/lib /newroot/mnt
	mount --move /proc /newroot/proc
	mount --move /sys /newroot/sys
	mount --move /dev /newroot/dev
	exec switch_root /newroot /init stage2
fi
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for m in /modules/*.ko; do insmod \$m; done
ip link set lo up
hostname cgroupv2-vm
echo "+cpuset +cpu +io +memory +hugetlb +pids" >/sys/fs/cgroup/cgroup.subtree_control
echo "VM: kernel \$(uname -r), cgroup2 controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
export CRI_MINI_BIN=/bin/cri-mini CRI_MINI_TEST_IMAGES=/test-images CRI_MINI_E2E_HOST_NETWORK=1 HOME=/root TMPDIR=/tmp
fail=0
for t in /tests/unit-*.test; do
	[ -e "\$t" ] || continue
	echo "VM: running \$t"
	(cd /tmp && \$t -test.v -test.count=1 -test.timeout 10m) || fail=1
done
echo "VM: running e2e -test.run '${run_regex}'"
(cd /tmp && /tests/e2e.test -test.v -test.count=1 -test.timeout 20m -test.run '${run_regex}') || fail=1
echo "VM-RESULT: \$([ \$fail = 0 ] && echo PASS || echo FAIL)"
sync
poweroff -f
EOF
chmod 0755 "${root}/init"

log "packing the initramfs"
(cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1) >"${vm}/initramfs.cpio.gz"

log "booting ${kver} under QEMU TCG (timeout ${timeout_s}s); console in ${vm}/console.log"
set +e
timeout "${timeout_s}" qemu-system-x86_64 -accel tcg -m "${mem_mib}" -smp 2 -nographic -no-reboot \
	-kernel "${vmlinuz}" -initrd "${vm}/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 quiet" </dev/null >"${vm}/console.log" 2>&1
rc=$?
set -e
grep -E '^(VM|---|===|ok|FAIL|PASS|panic:)' "${vm}/console.log" | grep -v '^=== RUN' || true
if ! grep -q '^VM-RESULT: PASS' "${vm}/console.log"; then
	[[ ${rc} == 124 ]] && warn "the VM did not finish within ${timeout_s}s"
	die "tests failed in the cgroup v2 VM, see ${vm}/console.log"
fi
log "all tests passed on cgroup v2"
