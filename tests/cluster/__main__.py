"""`python -m tests.cluster up --vms N --kubeconfig FILE`: a local KubeVirt cluster simulator
with N real VMs, in the foreground until SIGINT/SIGTERM, then everything is torn down.

The kubeconfig is written only once the API answers and every guest agent is connected.
Printed at start-up: `libvirt: <URI>` (check a guest's real state without the plugin, e.g.
`virsh -c <URI> qemu-agent-command demo_vm1 '{"execute":"guest-fsfreeze-status"}'`) and one
`console: <domain> <file>` per guest (its serial console, with the heartbeat lines), and one
`disk: <domain> <file>` per guest data disk (a raw ext4 image: copy it while the guest is frozen
for a consistent backup, e.g. `cp <file> copy.img && dumpe2fs -h copy.img`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from tests.rig import GuestSpec, Rig

from .kubevirt.cluster import SimCluster
from .kubevirt.objects import has_condition


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run a simulated cluster with real VMs until SIGINT/SIGTERM")
    up.add_argument("--vms", type=int, default=1, help="how many real VMs (vm1..vmN in namespace demo)")
    up.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig")
    up.add_argument("--namespace", default="demo")
    up.add_argument("--image", choices=["python", "stock"], default="python",
                    help="launcher image: python (python3 + libvirt-python) or stock (no python3)")
    up.add_argument("--poll-interval", type=float, default=5.0,
                    help="seconds between guest-fsfreeze-status polls (KubeVirt: 5)")
    up.add_argument("--user", default="admin", help="the kubeconfig's user (admin, editor, viewer, ...)")
    return parser.parse_args(argv)


def wait_for_agents(sim: SimCluster, namespace: str, names: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(has_condition(sim.vmi(namespace, n), "AgentConnected") for n in names):
        if time.monotonic() > deadline:
            raise TimeoutError("the guest agents did not connect")
        time.sleep(0.2)


def up(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    names = [f"vm{i + 1}" for i in range(args.vms)]
    rig = Rig.start()
    sim = None
    try:
        print(f"libvirt: {rig.uri}", flush=True)
        guests = rig.boot_many([GuestSpec(namespace=args.namespace, name=n) for n in names])
        for g in guests:
            print(f"console: {g.domain} {g.console_log}", flush=True)
            for disk in range(1, g.spec.data_disks + 1):
                print(f"disk: {g.domain} {g.disk_path(disk)}", flush=True)
        sim = SimCluster(rig, poll_interval=args.poll_interval).start()
        for name, guest in zip(names, guests):
            sim.add_vmi(args.namespace, name, guest, image=args.image)
        wait_for_agents(sim, args.namespace, names)
        partial = args.kubeconfig.with_name(args.kubeconfig.name + ".partial")
        sim.server.write_kubeconfig(partial, user=args.user, namespace=args.namespace)
        partial.rename(args.kubeconfig)
        print(f"api: {sim.server.url}", flush=True)
        print(f"kubeconfig: {args.kubeconfig}", flush=True)
        print("ready", flush=True)
        stop.wait()
    finally:
        if sim is not None:
            sim.stop()
        rig.stop()
        args.kubeconfig.unlink(missing_ok=True)
        print("stopped", flush=True)
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return up(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
