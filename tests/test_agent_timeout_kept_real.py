"""Issue 9 item 1: the bundled freezer leaves the domain's guest agent response timeout as
KubeVirt expects it (-2, block), so a later KubeVirt freeze (v1.6+: FSFreeze, which waits by that
per-domain timeout) still waits for a slow agent.

The slow agent is the rig's: qemu-ga's fsfreeze hook waits 7 s before the freeze, answering
nothing meanwhile (a database flushing in a pre-freeze hook, a Windows VSS writer). Holding qemu-ga
stopped (SIGSTOP) would not do: virt-launcher asks guest-fsfreeze-status first, with 5 s, and a
stopped agent fails that on every release.
"""

from __future__ import annotations

import re
import time

import libvirt
import pytest

from tests.test_e2e_plugin import NS, as_json, ok
from tests.test_freezer_unit import FreezerRun

SLOW_FREEZE_S = 7


def agent_timeout_setting(rig, domain: str) -> str | None:
    """The domain's agent response timeout as libvirt keeps it in the domain's status XML."""
    status_xml = (rig.daemon.workdir / "run" / "qemu" / f"{domain}.xml").read_text()
    found = re.search(r"<agentTimeout>(-?\d+)</agentTimeout>", status_xml)
    return found.group(1) if found else None


@pytest.mark.rig
def test_the_freezer_leaves_the_domains_agent_timeout_alone(rig, guest, tmp_path):
    run = FreezerRun(rig.uri, tmp_path / "state", guest.domain)
    try:
        assert agent_timeout_setting(rig, guest.domain) in ("-2", None)
        code, report = run("freeze", guest.domain, "--unfreeze-timeout", "60")
        assert code == 0 and report["status"] == "frozen", report
        code, report = run("thaw", guest.domain)
        assert code == 0 and report["status"] == "thawed", report
        assert agent_timeout_setting(rig, guest.domain) in ("-2", None)

        # What virt-launcher v1.6+ does next: FSFreeze, waiting for the slow agent.
        guest.agent_delay("freeze", SLOW_FREEZE_S)
        started = time.monotonic()
        try:
            assert guest.dom().fsFreeze(None, 0) == 2
        except libvirt.libvirtError as exc:
            pytest.fail(f"FSFreeze gave up after {time.monotonic() - started:.1f}s: {exc}")
        assert time.monotonic() - started >= SLOW_FREEZE_S - 0.5
        assert guest.agent_status() == "frozen"
    finally:
        run.stop_watchdogs()


@pytest.mark.cluster
def test_an_api_freeze_after_a_freezer_run_still_waits_for_a_slow_agent(cluster, rig):
    guest = cluster.guests["vm1"]
    ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "freezer"))
    ok(cluster.kubectl("unfreeze", "vm", "vm1", "--method", "freezer"))
    assert agent_timeout_setting(rig, guest.domain) in ("-2", None)

    guest.agent_delay("freeze", SLOW_FREEZE_S)
    out = cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "--unfreeze-timeout", "2m", "-o", "json")
    ok(out)
    assert as_json(out)["items"][0]["result"] == "frozen"
    assert guest.agent_status() == "frozen"
    guest.agent_delay("freeze", 0)
    ok(cluster.kubectl("unfreeze", "vm", "vm1", "--method", "api"))
    assert guest.agent_status() == "thawed"
    assert cluster.sim.vmis[(NS, "vm1")].launcher.safety_thaws == 0
