"""status.py: a frozen VMI whose launcher pod is not the one that froze it has no safety thaw."""

from __future__ import annotations

from kubectl_freeze import output
from kubectl_freeze.status import public, status_row
from tests.test_targets_unit import make_pod, make_vmi

FROZE_AT = "2026-01-01T11:58:00Z"


def freeze_event(pod: str | None) -> dict:
    annotations = {"kubectl-freeze.kubevirt.io/safety-thaw-deadline": "2026-01-01T12:03:00Z"}
    if pod:
        annotations["kubectl-freeze.kubevirt.io/pod"] = pod
    return {"reason": "FilesystemsFrozen", "lastTimestamp": FROZE_AT, "metadata": {"annotations": annotations}}


def migrated(start: str) -> dict:
    return {"migrationState": {"startTimestamp": start, "endTimestamp": start, "completed": True,
                               "targetNode": "node2", "sourcePod": "virt-launcher-a-old"}}


def test_the_pod_that_froze_it_is_still_current():
    row = public(status_row(make_vmi("a", frozen=True), make_pod("a"), freeze_event("virt-launcher-a-abcde")))
    assert row["noSafetyThaw"] is None and row["safetyThawDeadline"] == "2026-01-01T12:03:00Z"
    assert output.status_table([row]).splitlines()[1].split()[3] == "frozen"


def test_frozen_through_another_pod_has_no_safety_thaw():
    row = public(status_row(make_vmi("a", frozen=True), make_pod("a"), freeze_event("virt-launcher-a-old")))
    assert row["noSafetyThaw"].startswith("frozen, no safety thaw: it was frozen through pod virt-launcher-a-old, "
                                          "and the VMI now runs in pod virt-launcher-a-abcde")
    assert row["safetyThawDeadline"] is None and row["freeze"] == "frozen"
    assert "frozen, no safety thaw" in output.status_table([row])
    assert "Safety thaw:" in output.status_detail(row) and "stayed behind" in output.status_detail(row)


def test_an_event_without_the_pod_is_dated_against_the_migration():
    # Events of older plugin versions name no pod: a migration that started after the freeze tells.
    after = public(status_row(make_vmi("a", frozen=True, **migrated("2026-01-01T11:59:00Z")), make_pod("a"),
                              freeze_event(None)))
    assert after["noSafetyThaw"] and after["safetyThawDeadline"] is None
    before = public(status_row(make_vmi("a", frozen=True, **migrated("2026-01-01T11:50:00Z")), make_pod("a"),
                               freeze_event(None)))
    assert before["noSafetyThaw"] is None


def test_a_thawed_vmi_is_never_flagged():
    row = public(status_row(make_vmi("a"), make_pod("a"), freeze_event("virt-launcher-a-old")))
    assert row["noSafetyThaw"] is None
