#!/usr/bin/env bash
# Installs everything the demo and the tests need, on a Debian 12 machine, as root:
# Debian packages (libvirt, QEMU, the guest agent, busybox), a virtualenv in .venv with the
# plugin and its test dependencies, and the guest kernel + initramfs (cached).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-utils qemu-guest-agent busybox-static e2fsprogs cpio
    libvirt-dev pkg-config gcc python3-dev python3-venv util-linux
    zsh fish    # the completion tests drive real shells
)
export DEBIAN_FRONTEND=noninteractive
# The package lists are needed anyway: the guest kernel is found through apt-cache.
apt-get update -qq
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# pip's build warnings are noise on success; show them when it fails.
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[test]'; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: pip install failed" >&2
    exit 1
fi
rm -f "$log"

# Download the guest kernel and build the initramfs now rather than inside the first test.
.venv/bin/python -c 'from tests.rig.artifacts import ensure_boot_artifacts; print("setup: guest boot files:", ensure_boot_artifacts())'
