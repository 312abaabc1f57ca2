"""runner.py: parallel, all-or-none freezes with rollback, exit codes, what gets reported."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from kubectl_freeze import runner as runner_mod
from kubectl_freeze.errors import EXIT_FAILED, EXIT_OK, EXIT_UNCONFIRMED, Failed
from kubectl_freeze.methods import FREEZE, UNFREEZE, Options, Outcome
from kubectl_freeze.runner import Report, Runner, RunOptions, summary_error
from kubectl_freeze.targets import Target
from tests.test_targets_unit import FakeKube, make_pod, make_vmi


class FakeMethod:
    """Scripted method: ``script[(name, action)]`` is an Outcome (default: ok)."""

    name = "freezer"

    def __init__(self, script=None, delay=0.0):
        self.script = script or {}
        self.runs: list[tuple[str, str]] = []
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def plan(self, target, action, options):
        return {"pod": target.pod_name, "container": "compute", "command": ["fake", action]}

    def run(self, kube, target, action, options, deadline):
        with self.lock:
            self.runs.append((target.name, action))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        want = "frozen" if action == FREEZE else "thawed"
        return self.script.get((target.name, action)) or Outcome("freezer", True, agent_status=want,
                                                                 safety_thaw_deadline="2026-01-01T00:05:00Z")


@pytest.fixture
def method(monkeypatch):
    fake = FakeMethod()
    monkeypatch.setattr(runner_mod, "get", lambda name: fake)
    return fake


def targets(*names, frozen=()):
    return [Target(make_vmi(n, frozen=n in frozen), make_pod(n)) for n in names]


def run(kube, items, action=FREEZE, **kw):
    opts = RunOptions(action=action, method="freezer", options=Options(timedelta(minutes=5)),
                      timeout=timedelta(seconds=kw.pop("timeout", 5)), wait=kw.pop("wait", False), who="me@host", **kw)
    return Runner(kube, opts).run(items)


def test_all_frozen_is_exit_0_with_events(method):
    kube = FakeKube()
    report = run(kube, targets("a", "b"))
    assert report.exit_code == EXIT_OK and summary_error(report) is None
    assert [r.state for r in report.results] == ["frozen", "frozen"]
    assert [r.confirmed_by() for r in report.results] == [["agent"], ["agent"]]
    reasons = sorted(e["reason"] for e in kube.events)
    assert reasons == ["FilesystemsFrozen", "FilesystemsFrozen"]
    annotations = kube.events[0]["metadata"]["annotations"]
    assert annotations["kubectl-freeze.kubevirt.io/safety-thaw-deadline"] == "2026-01-01T00:05:00Z"
    assert "me@host" in kube.events[0]["message"] and "safety thaw at" in kube.events[0]["message"]


def test_group_freeze_failure_thaws_what_this_run_froze(method):
    method.script[("b", FREEZE)] = Outcome("freezer", False, error=Failed("could not freeze demo/b: agent gone"))
    kube = FakeKube()
    report = run(kube, targets("a", "b", "c"))
    assert report.exit_code == EXIT_FAILED
    assert {r.target.name: r.state for r in report.results} == {"a": "rolled-back", "b": "failed",
                                                               "c": "rolled-back"}
    assert sorted(n for n, a in method.runs if a == UNFREEZE) == ["a", "c"]
    line = summary_error(report)
    assert "1 of 3 VMs failed to freeze" in line and "agent gone" in line
    assert "thawed again: demo/a, demo/c" in line
    assert "FreezeRolledBack" in [e["reason"] for e in kube.events]


def test_rollback_spares_vms_frozen_before_the_run_and_already_frozen_ones(method):
    method.script[("c", FREEZE)] = Outcome("freezer", False, error=Failed("nope"))
    method.script[("b", FREEZE)] = Outcome("freezer", True, agent_status="frozen", already=True)
    report = run(FakeKube(), targets("a", "b", "c", frozen=("a",)))
    assert [n for n, a in method.runs if a == UNFREEZE] == []
    assert report.exit_code == EXIT_FAILED


def test_rollback_trusts_the_agent_over_a_stale_frozen_status(method):
    # The VMI said frozen (a poll behind a safety thaw) but the freezer found the guest thawed and
    # froze it: this run froze it, so it is thawed again when the group fails.
    method.script[("a", FREEZE)] = Outcome("freezer", True, agent_status="frozen", already=False)
    method.script[("b", FREEZE)] = Outcome("freezer", False, error=Failed("nope"))
    run(FakeKube(), targets("a", "b", frozen=("a",)))
    assert [n for n, a in method.runs if a == UNFREEZE] == ["a"]


def test_rollback_includes_a_failed_freeze_that_may_have_frozen(method):
    method.script[("b", FREEZE)] = Outcome("freezer", False, error=Failed("agent timeout"), maybe_changed=True)
    run(FakeKube(), targets("a", "b"))
    assert sorted(n for n, a in method.runs if a == UNFREEZE) == ["a", "b"]


def test_a_failed_rollback_tells_how_to_thaw_by_hand(method):
    method.script[("b", FREEZE)] = Outcome("freezer", False, error=Failed("nope"))
    method.script[("a", UNFREEZE)] = Outcome("freezer", False, error=Failed("thaw failed"))
    report = run(FakeKube(), targets("a", "b"))
    line = summary_error(report)
    assert "could not confirm the thaw of demo/a" in line and "kubectl unfreeze vm a -n demo" in line
    assert report.results[0].to_dict()["rollback"]["result"] == "failed"


def test_unfreeze_failures_do_not_roll_anything_back(method):
    method.script[("b", UNFREEZE)] = Outcome("freezer", False, error=Failed("nope"))
    report = run(FakeKube(), targets("a", "b", frozen=("a", "b")), action=UNFREEZE)
    assert [a for _, a in method.runs] == [UNFREEZE, UNFREEZE]
    assert report.exit_code == EXIT_FAILED and "1 of 2 VMs failed to thaw" in summary_error(report)


def test_confirmation_through_the_vmi_status(method):
    kube = FakeKube()
    kube.watch_scripts = [[{"type": "MODIFIED", "object": make_vmi("a", rv="101", frozen=True)}]]
    report = run(kube, targets("a"), wait=True)
    result = report.results[0]
    assert result.state == "frozen" and result.confirmed_by() == ["agent", "vmi-status"]
    data = report.to_dict()["items"][0]
    assert data["vmiStatus"] == {"fsFreezeStatus": "frozen", "confirmed": True, "resourceVersion": "101"}
    assert set(data["timings"]) >= {"actionMs", "confirmMs", "totalMs"}


def test_not_confirmed_in_time_is_exit_3_without_rollback(method):
    kube = FakeKube()
    kube.watch_scripts = [[{"type": "MODIFIED", "object": make_vmi("a", rv="101")}]] * 1000
    report = run(kube, targets("a"), wait=True, timeout=0.3)
    assert report.exit_code == EXIT_UNCONFIRMED
    assert [a for _, a in method.runs] == [FREEZE]
    line = summary_error(report)
    assert "the guest agent answered frozen" in line and "did not show frozen within" in line
    assert "last seen: no fsFreezeStatus" in line


def test_dry_run_plans_and_changes_nothing(method):
    kube = FakeKube()
    report = run(kube, targets("a", "b"), dry_run=True)
    assert method.runs == [] and kube.writes() == []
    assert report.to_dict()["kind"] == "FreezePlan" and report.exit_code == EXIT_OK
    assert report.results[0].plan["command"] == ["fake", FREEZE]


def test_parallel_is_bounded(method):
    method.delay = 0.05
    run(FakeKube(), targets(*[f"vm{i}" for i in range(6)]), parallel=2)
    assert method.max_active == 2


def test_report_dict_has_the_same_facts_as_the_table(method):
    report = run(FakeKube(), targets("a"))
    item = report.to_dict()["items"][0]
    assert item["result"] == "frozen" and item["method"] == "freezer" and item["pod"] == "virt-launcher-a-abcde"
    assert item["agent"] == {"status": "frozen", "already": None, "filesystems": None}
    assert item["safetyThaw"] == {"after": "5m0s", "deadline": "2026-01-01T00:05:00Z", "armed": None, "note": None}
    assert isinstance(report, Report)


def test_methods_are_chosen_for_all_vms_before_any_is_frozen(monkeypatch):
    from kubectl_freeze.kube import ExecResult
    from kubectl_freeze.methods import auto

    fake = FakeMethod()
    monkeypatch.setattr(runner_mod, "get", lambda name: fake)
    kube = FakeKube()
    kube.exec_results = {tuple(auto.PYTHON_PROBE[:2]): ExecResult(1, "", ""),
                         tuple(auto.VIRT_FREEZER_PROBE[:2]): ExecResult(0, "", "")}
    opts = RunOptions(action=FREEZE, method="auto", options=Options(timedelta(minutes=5), ["/data"]), wait=False)
    with pytest.raises(Failed, match="2 of 2 VMs cannot be handled, so none was.*--mountpoint needs"):
        Runner(kube, opts).run(targets("a", "b"))
    assert fake.runs == [] and kube.events == []
