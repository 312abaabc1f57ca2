"""`kubectl freeze run` and a live migration that starts after the preflight (issue 11), on real guests
through the real kubectl.

The bundled freezer's hold and the sh hold freeze straight through libvirt, where nothing refuses a
freeze during a migration (virt-launcher does, for the api and virt-freezer paths), and a migration
carries a frozen guest away from its held session and its safety thaw. So freeze run re-reads each
VMI right before starting its freeze, and watches the VMIs during the window.

Deterministic placement: two VMs frozen one after the other (--parallel 1); the first one's guest
agent is slow to freeze (the rig's agent_delay), and while that freeze is in flight the second VM's
migration starts. Its pre-freeze re-check then refuses: the first is thawed again, exit 125,
COMMAND not run. Each test ends by reading both guests' state from the guest agent through libvirt.

The VMIs live in a namespace of their own with guests of their own, so the migrations leave the
shared e2e VMIs alone; after each test a migration left open is completed (SimCluster).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.cluster.kubevirt.objects import has_condition
from tests.rig import GuestSpec
from tests.test_freeze_run_real import error_lines, start_run, wait_until
from tests.test_simulator import wait_for

pytestmark = [pytest.mark.rig, pytest.mark.cluster]

NS = "migrun"
NAMES = ("a", "b")


@pytest.fixture(scope="module")
def _pair(_cluster) -> Iterator[dict]:
    sim = _cluster.sim
    guests = sim.rig.boot_many([GuestSpec(namespace=NS, name=n) for n in NAMES])
    try:
        for name, guest in zip(NAMES, guests):
            sim.add_vmi(NS, name, guest, image="python")
        for name in NAMES:
            wait_for(lambda name=name: has_condition(sim.vmi(NS, name), "AgentConnected"), 60,
                     f"the agent of {name} to connect")
        yield dict(zip(NAMES, guests))
    finally:
        for name in NAMES:
            if (NS, name) in sim.vmis:
                sim.remove_vmi(NS, name)
        for guest in guests:
            guest.destroy()


@pytest.fixture
def pair(cluster, _pair) -> Iterator[dict]:
    yield _pair
    for name, guest in _pair.items():
        guest.agent_delay("freeze", 0)
        if cluster.sim.vmis[(NS, name)].migrating:
            cluster.sim.complete_migration(NS, name)
        guest.dom().fsThaw(None, 0)


class StderrLines:
    """Collects a running plugin's stderr, line by line, so a test can act on a progress line."""

    def __init__(self, proc):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc) -> None:
        for line in proc.stderr:
            self.lines.append(line)

    def seen(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def test_migration_started_between_preflight_and_freeze_refuses_125_and_thaws_the_first(cluster, pair, tmp_path):
    sim = cluster.sim
    marker = tmp_path / "ran"
    pair["a"].agent_delay("freeze", 4)                 # a's freeze stays in flight for 4 s
    proc = start_run(cluster, "a", "b", "-n", NS, "--parallel", "1", "--", "touch", str(marker))
    err = StderrLines(proc)
    try:
        # the preflight and the probe are done, a's freeze is in flight: now b starts migrating
        assert wait_until(lambda: err.seen(f"freezing {NS}/a"), 60), err.text()
        assert sim.vmi(NS, "b")["status"].get("migrationState") is None
        sim.start_migration(NS, "b")
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.text()
    assert proc.returncode == 125, stderr
    [line] = error_lines(stderr)
    assert f"{NS}/b" in line and "migrating" in line and "COMMAND was not run" in line
    assert f"thawed again: {NS}/a" in line
    assert "started migrating after the preflight" in stderr     # the re-check, not the preflight
    assert "Traceback" not in stderr
    assert not marker.exists()
    # b was never frozen, a was frozen and thawed again: read from the guest agents through libvirt
    assert pair["a"].agent_status() == "thawed" and pair["b"].agent_status() == "thawed"
    time.sleep(2)
    assert pair["a"].agent_status() == "thawed" and pair["b"].agent_status() == "thawed"


def test_migration_started_during_the_window_stops_command_thaws_at_once_and_exits_123(cluster, pair, tmp_path):
    sim = cluster.sim
    marker, gate = tmp_path / "in-window", tmp_path / "gate"
    script = f"touch {marker}; while [ ! -e {gate} ]; do sleep 0.1; done"
    proc = start_run(cluster, "a", "b", "-n", NS, "--max-window", "60s", "--", "sh", "-c", script)
    err = StderrLines(proc)
    try:
        assert wait_until(marker.exists, 60), err.text()
        assert pair["a"].agent_status() == "frozen" and pair["b"].agent_status() == "frozen"
        started = time.monotonic()
        sim.start_migration(NS, "b")
        proc.wait(timeout=30)                         # COMMAND never ends by itself: the run stops it
        assert time.monotonic() - started < 15
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
    stderr = err.text()
    assert proc.returncode == 123, stderr
    [line] = error_lines(stderr)
    assert f"{NS}/b" in line and "migration" in line and "thawed" in line
    assert any(ln.startswith("warning:") and f"{NS}/b" in ln and "migrating" in ln for ln in stderr.splitlines())
    # thawed before the migration completes: the held sessions did it, as read through libvirt
    assert pair["a"].agent_status() == "thawed" and pair["b"].agent_status() == "thawed"
    sim.complete_migration(NS, "b")
    time.sleep(1)
    assert pair["a"].agent_status() == "thawed" and pair["b"].agent_status() == "thawed"


def test_migrating_now_reads_migration_state_and_the_target_pod_label():
    from kubectl_freeze.targets import MIGRATION_JOB, migrating_now

    vmi = {"metadata": {"uid": "u1"}, "status": {}}
    state = {"startTimestamp": "t0", "targetNode": "n2", "migrationUid": "j1"}
    assert migrating_now(vmi) is None
    assert "node n2" in migrating_now({**vmi, "status": {"migrationState": dict(state)}})
    for done in ({"endTimestamp": "t1"}, {"completed": True}, {"failed": True}):
        assert migrating_now({**vmi, "status": {"migrationState": {**state, **done}}}) is None
    pod = {"metadata": {"name": "target", "labels": {MIGRATION_JOB: "j1"},
                        "ownerReferences": [{"uid": "u1", "controller": True}]}, "spec": {"nodeName": "n2"}}
    # the target pod exists before KubeVirt writes migrationState
    assert "target pod target" in migrating_now(vmi, [pod])
    # a pod that carries the label from a migration that completed is the current pod, not a target
    finished = {**vmi, "status": {"migrationState": {**state, "endTimestamp": "t1", "completed": True}}}
    assert migrating_now(finished, [pod]) is None
    other = {**pod, "metadata": {**pod["metadata"], "ownerReferences": [{"uid": "u2", "controller": True}]}}
    assert migrating_now(vmi, [other]) is None
