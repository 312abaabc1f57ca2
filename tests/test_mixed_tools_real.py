"""Issue 9 item 4: mixed tools. KubeVirt's safety timer is cancelled only through virt-launcher,
the freezer's watchdog only by the freezer; KubeVirt's own Velero hooks and VirtualMachineSnapshots
make mixing them normal. A stale timer of one must not thaw a later freeze of the other.

Through the plugin and the real kubectl, on the real guest e2e/vm1 (launcher image with python3 and
/usr/bin/virt-freezer); the guest's state is read from its agent.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.test_e2e_plugin import NS, as_json, epoch, ok
from tests.test_simulator import wait_for

pytestmark = pytest.mark.cluster

KUBEVIRT_METHODS = ["api", "virt-freezer"]   # both go through virt-launcher, which arms its timer
KUBEVIRT_TIMEOUT_S = 16                      # short timers, so that the tests stay quick,
WATCHDOG_TIMEOUT_S = 22                      # yet long enough for a few plugin runs on a busy machine


def freeze(cluster, method: str, timeout_s: int) -> dict:
    out = ok(cluster.kubectl("freeze", "vm", "vm1", "--method", method, "--unfreeze-timeout", f"{timeout_s}s",
                             "-o", "json"))
    return as_json(out)["items"][0]


def stays_frozen_until(guest, until: float) -> None:
    while time.time() < until:
        assert guest.agent_status() == "frozen", "thawed by a stale safety thaw"
        time.sleep(0.2)


def watchdog_files(cluster, suffix: str) -> list:
    """The freezer's safety-thaw files in vm1's launcher pod: *.json while a watchdog is armed,
    *.log for what watchdogs did."""
    pod = cluster.sim.pod_names(NS, "vm1")[0]
    run_dir = cluster.sim.backend.sandboxes[(NS, pod)].run_dir
    return list((run_dir / "kubevirt-private" / "kubectl-freeze").glob(f"*{suffix}"))


def watchdog_log(cluster) -> list[dict]:
    return [json.loads(line) for path in watchdog_files(cluster, ".log") for line in path.read_text().splitlines()]


@pytest.mark.parametrize("kubevirt", KUBEVIRT_METHODS)
def test_a_freezer_thaw_cancels_kubevirts_timer_so_a_later_freezer_freeze_holds(cluster, kubevirt):
    guest = cluster.guests["vm1"]
    launcher = cluster.sim.vmis[(NS, "vm1")].launcher
    first = time.time()
    freeze(cluster, kubevirt, KUBEVIRT_TIMEOUT_S)       # virt-launcher arms its timer
    ok(cluster.kubectl("unfreeze", "vm", "vm1", "--method", "freezer"))
    assert guest.agent_status() == "thawed"
    assert not launcher.timer_armed, "the freezer's thaw left KubeVirt's timer armed"

    ours = freeze(cluster, "freezer", WATCHDOG_TIMEOUT_S)
    own_deadline = epoch(ours["safetyThaw"]["deadline"])
    assert own_deadline > first + KUBEVIRT_TIMEOUT_S + 2
    # Past the moment KubeVirt's timer would have fired, up to our own deadline: frozen.
    stays_frozen_until(guest, own_deadline - 0.5)
    assert launcher.safety_thaws == 0   # (however slow the runs were: it never fired, not even on a thawed guest)
    # And our own safety thaw still comes.
    wait_for(lambda: guest.agent_status() == "thawed", own_deadline + 5 - time.time(), "the freezer's safety thaw")


@pytest.mark.parametrize("kubevirt", KUBEVIRT_METHODS)
def test_a_kubevirt_thaw_disarms_the_freezers_watchdog_so_a_later_kubevirt_freeze_holds(cluster, kubevirt):
    guest = cluster.guests["vm1"]
    before = len(watchdog_log(cluster))
    ours = freeze(cluster, "freezer", WATCHDOG_TIMEOUT_S)
    watchdog_deadline = epoch(ours["safetyThaw"]["deadline"])
    ok(cluster.kubectl("unfreeze", "vm", "vm1", "--method", kubevirt))   # the freezer is not told
    assert guest.agent_status() == "thawed"
    # The watchdog asks the agent every 2 s: a thaw and a new freeze within one poll would be seen as
    # one long freeze (the residual race); this test leaves it the time to see the thaw, as a real
    # backup schedule does.
    wait_for(lambda: not watchdog_files(cluster, ".json"), 6, "the watchdog to disarm")
    [disarmed] = watchdog_log(cluster)[before:]
    assert disarmed["event"] == "disarmed" and epoch(disarmed["at"]) < watchdog_deadline - 3

    freeze(cluster, kubevirt, 60)
    stays_frozen_until(guest, watchdog_deadline + 2)
    ok(cluster.kubectl("unfreeze", "vm", "vm1", "--method", kubevirt))
    assert guest.agent_status() == "thawed"
