"""The real world the end-to-end benchmarks run in: the rig's real QEMU guests behind the
KubeVirt cluster simulator, driven through the real kubectl, started and stopped here."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import KUBECTL, plugin_env

NAMESPACE = "bench"
VMS = ("vm1", "vm2")


@dataclass
class World:
    rig: object
    sim: object
    guests: dict                 # name -> tests.rig.Guest
    kubeconfig: Path
    workdir: Path
    boot_s: float = 0.0
    markers: list[str] = field(default_factory=list)   # what names our processes in /proc

    @classmethod
    def start(cls, workdir: Path, poll_interval: float = 5.0) -> "World":
        from tests.cluster.kubevirt.cluster import SimCluster
        from tests.rig import GuestSpec, Rig

        started = time.perf_counter()
        rig = Rig.start()
        sim = None
        try:
            guests = rig.boot_many([GuestSpec(namespace=NAMESPACE, name=n) for n in VMS])
            sim = SimCluster(rig, poll_interval=poll_interval).start()
            for name, guest in zip(VMS, guests):
                sim.add_vmi(NAMESPACE, name, guest, image="python")
            kubeconfig = workdir / "kubeconfig"
            sim.server.write_kubeconfig(kubeconfig, user="admin", namespace=NAMESPACE)
            world = cls(rig, sim, dict(zip(VMS, guests)), kubeconfig, workdir,
                        markers=[str(rig.workdir), str(sim.workdir), f"KF_SIM_INSTANCE={sim.instance}"])
            world.wait_agents_connected()
            world.kubectl("freeze", "status")    # fills the bytecode cache of a real run's imports
            world.boot_s = time.perf_counter() - started
            return world
        except BaseException:
            if sim is not None:
                sim.stop()
            rig.stop()
            raise

    def stop(self) -> None:
        try:
            self.sim.stop()
        finally:
            self.rig.stop()

    # ----- driving it ----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return plugin_env(self.workdir, self.kubeconfig)

    def kubectl(self, *args: str, timeout: float = 120) -> tuple[float, subprocess.CompletedProcess]:
        from .common import run

        return run([KUBECTL, *args], self.env(), timeout=timeout)

    def set_poll_interval(self, seconds: float) -> None:
        """KubeVirt's --qemu-fsfreeze-status-interval, changed on the running simulator."""
        self.sim.poller.interval = seconds
        self.sim.poller.poke()

    def vmi_freeze_status(self, name: str) -> str:
        return self.sim.vmi(NAMESPACE, name)["status"].get("fsFreezeStatus") or "thawed"

    def wait_agents_connected(self, timeout: float = 60) -> None:
        from tests.cluster.kubevirt.objects import has_condition

        deadline = time.monotonic() + timeout
        while not all(has_condition(self.sim.vmi(NAMESPACE, n), "AgentConnected") for n in self.guests):
            if time.monotonic() > deadline:
                raise TimeoutError("the guest agents did not connect")
            time.sleep(0.2)

    def wait_settled(self, timeout: float = 30) -> None:
        """Every guest thawed, and its VMI status says so (between measurements)."""
        deadline = time.monotonic() + timeout
        for name, guest in self.guests.items():
            while guest.agent_status() != "thawed" or self.vmi_freeze_status(name) != "thawed":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not settle thawed")
                self.sim.poller.poke()
                time.sleep(0.1)


def leftover_processes(markers: list[str]) -> list[str]:
    """Processes whose command line or environment names what we started (should be none)."""
    found = []
    needles = [m.encode() for m in markers if m]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if any(n in cmdline or n in environ for n in needles):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name} {command[:120]}")
    return found
