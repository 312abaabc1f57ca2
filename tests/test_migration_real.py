"""A frozen VMI that live-migrates (issue 9 item 9), on a real guest.

Nothing in KubeVirt stops a frozen VMI from migrating, and both safety thaws (KubeVirt's timer in
virt-launcher, the freezer's watchdog) live in the launcher pod that froze the guest: after the
migration neither exists. `freeze status` must show such a VMI as "frozen, no safety thaw" (table,
detail and JSON); it knows the pod that froze it from the freeze's Event.

The VMI here has a guest of its own (in its own namespace), so the migration leaves the shared
e2e VMIs as they were. The test world's migration (SimCluster.complete_migration) makes the target
pod current and ends the source pod with its launcher timer and the processes exec left there;
the rig's domain stays where it is, frozen, as a migrated guest arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.cluster.kubevirt.objects import has_condition
from tests.rig import GuestSpec
from tests.test_e2e_plugin import as_json, item, ok, table
from tests.test_simulator import wait_for

pytestmark = pytest.mark.cluster

NS, VM = "mig", "db"
NO_SAFETY_THAW = "frozen, no safety thaw"


@pytest.fixture(scope="module")
def _migrant(_cluster) -> Iterator[object]:
    guest = _cluster.sim.rig.boot(GuestSpec(namespace=NS, name=VM))
    try:
        _cluster.sim.add_vmi(NS, VM, guest, image="python")
        wait_for(lambda: has_condition(_cluster.sim.vmi(NS, VM), "AgentConnected"), 60, "the agent to connect")
        yield guest
    finally:
        _cluster.sim.remove_vmi(NS, VM)
        guest.destroy()


@pytest.fixture
def migrant(cluster, _migrant) -> Iterator[object]:
    yield _migrant
    _migrant.dom().fsThaw(None, 0)


def status(cluster, *args: str):
    return ok(cluster.kubectl("freeze", "status", *args, "-n", NS))


@pytest.mark.parametrize("method", ["freezer", "api"])
def test_a_frozen_vmi_that_migrated_shows_frozen_no_safety_thaw(cluster, migrant, method):
    sim = cluster.sim
    started = time.monotonic()
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", VM, "-n", NS, "--method", method,
                                             "--unfreeze-timeout", "40s", "-o", "json"))), VM)
    deadline = started + 40
    assert frozen["result"] == "frozen" and frozen["safetyThaw"]["deadline"]
    [source] = sim.pod_names(NS, VM)
    source_node = sim.vmi(NS, VM)["status"]["nodeName"]
    sim.start_migration(NS, VM)
    target = sim.complete_migration(NS, VM)
    assert time.monotonic() < deadline - 5, "too slow: the safety thaw was due before the migration"
    assert target != source and sim.pod_names(NS, VM) == [target]

    # (the slow part, on a busy machine, comes after the migration)
    rows = table(status(cluster, "-o", "wide").stdout)
    assert rows[0]["FREEZE"] == NO_SAFETY_THAW and rows[0]["POD"] == target
    assert rows[0]["NODE"] == sim.vmi(NS, VM)["status"]["nodeName"] != source_node
    assert rows[0]["SAFETY THAW"] == "none (migrated)"
    [after] = as_json(status(cluster, "-o", "json"))["items"]
    assert after["freeze"] == "frozen" and after["pod"] == target and after["safetyThawDeadline"] is None
    assert after["noSafetyThaw"].startswith(f"{NO_SAFETY_THAW}: it was frozen through pod {source}")
    detail = status(cluster, VM).stdout
    assert "frozen, no safety thaw since" in detail and f"Safety thaw:" in detail and "stayed behind" in detail

    # And it is true: past the deadline the guest is still frozen, nobody thaws it.
    time.sleep(max(0.0, deadline + 3 - time.monotonic()))
    assert migrant.agent_status() == "frozen"
    assert sim.vmis[(NS, VM)].launcher.safety_thaws == 0
    # A thaw through the new pod works.
    thawed = item(as_json(ok(cluster.kubectl("unfreeze", "vm", VM, "-n", NS, "--method", method, "-o", "json"))), VM)
    assert thawed["result"] == "thawed" and thawed["pod"] == target
    assert migrant.agent_status() == "thawed"
    assert table(status(cluster).stdout)[0]["FREEZE"] == "thawed"
