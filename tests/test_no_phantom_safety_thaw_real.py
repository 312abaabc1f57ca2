"""Issue 9 item 3: no phantom safety thaw. KubeVirt's launcher freezes an already frozen guest by
doing nothing: it arms no timer and keeps the old one (or none, when the guest was frozen straight
through libvirt). The api and virt-freezer methods must then not print, return in JSON or write into
the Event a deadline that KubeVirt did not arm. On real guests; the guest is read through libvirt.
"""

from __future__ import annotations

import time

import pytest

from tests.test_e2e_plugin import as_json, events, item, ok, table
from tests.test_simulator import wait_for

pytestmark = pytest.mark.cluster


def fresh_events(cluster, before: dict, name: str) -> list[dict]:
    new = [e for key, e in events(cluster).items() if key not in before and e["involvedObject"]["name"] == name]
    return sorted(new, key=lambda e: int(e["metadata"]["resourceVersion"]))


def assert_no_deadline_claimed(cluster, frozen: dict, before_events: dict, name: str) -> None:
    assert frozen["result"] == "frozen"
    assert frozen["safetyThaw"]["deadline"] is None and frozen["safetyThaw"]["after"] is None
    assert frozen["safetyThaw"]["armed"] is False
    assert frozen["safetyThaw"]["note"].startswith("kept from the earlier freeze")
    assert any("already frozen; its existing safety thaw was not extended" in w for w in frozen["warnings"])
    [event] = fresh_events(cluster, before_events, name)
    assert event["reason"] == "FilesystemsFrozen"
    assert "safety thaw at" not in event["message"] and "safety thaw kept from the earlier freeze" in \
        event["message"], event["message"]
    assert "kubectl-freeze.kubevirt.io/safety-thaw-deadline" not in (event["metadata"].get("annotations") or {})
    status = item(as_json(ok(cluster.kubectl("freeze", "status", name, "-o", "json"))), name)
    assert status["freeze"] == "frozen" and status["safetyThawDeadline"] is None


def test_api_freeze_of_a_guest_frozen_by_the_freezer_claims_no_new_deadline(cluster):
    guest = cluster.guests["vm1"]
    ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "freezer"))
    before = events(cluster)
    out = ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "--unfreeze-timeout", "2m", "-o", "json"))
    assert_no_deadline_claimed(cluster, item(as_json(out), "vm1"), before, "vm1")
    wide = table(ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "-o", "wide")).stdout)
    assert wide[0]["SAFETY THAW"] == "-" and wide[0]["ALREADY"] == "yes"
    assert guest.agent_status() == "frozen"


def test_virt_freezer_freeze_of_a_guest_frozen_through_libvirt_arms_nothing(cluster):
    guest = cluster.guests["vm2"]
    guest.dom().fsFreeze(None, 0)          # frozen straight through libvirt: KubeVirt has no timer
    before = events(cluster)
    out = ok(cluster.kubectl("freeze", "vm", "vm2", "--method", "virt-freezer", "--unfreeze-timeout", "3s",
                             "-o", "json"))
    assert_no_deadline_claimed(cluster, item(as_json(out), "vm2"), before, "vm2")
    # and indeed the launcher armed nothing: 3 s and more later the guest is still frozen
    time.sleep(4)
    assert guest.agent_status() == "frozen"


def test_api_freeze_without_exec_of_a_vmi_shown_frozen_says_the_deadline_is_unknown(cluster):
    guest = cluster.guests["vm1"]
    guest.dom().fsFreeze(None, 0)
    wait_for(lambda: cluster.vmi("vm1")["status"].get("fsFreezeStatus") == "frozen", what="the status to show it")
    out = cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "--context", "no-exec", "--timeout", "5s",
                          "-o", "json")
    # a status that showed frozen before cannot confirm this freeze: exit 3, as for every method
    assert out.returncode == 3, out.stderr
    frozen = item(as_json(out), "vm1")
    assert frozen["safetyThaw"]["deadline"] is None and frozen["safetyThaw"]["armed"] is None
    assert frozen["safetyThaw"]["note"].startswith("unknown: the VMI status showed frozen before this freeze")


def test_a_freeze_of_a_thawed_guest_still_reports_the_deadline_kubevirt_armed(cluster):
    out = ok(cluster.kubectl("freeze", "vm", "vm2", "--method", "api", "--unfreeze-timeout", "90s", "-o", "json"))
    frozen = item(as_json(out), "vm2")
    assert frozen["safetyThaw"]["armed"] is True and frozen["safetyThaw"]["after"] == "1m30s"
    assert frozen["safetyThaw"]["deadline"] and frozen["agent"]["already"] is False
    assert cluster.guests["vm2"].agent_status() == "frozen"
