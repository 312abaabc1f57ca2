"""methods/: the auto decision table and probe, and how each method reads its result."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest

from kubectl_freeze import freezer
from kubectl_freeze.errors import Failed
from kubectl_freeze.kube import ExecResult, KubeError
from kubectl_freeze.methods import FREEZE, UNFREEZE, Options, auto, bundled, get, subresource, virt_freezer
from kubectl_freeze.targets import Target
from tests.test_targets_unit import FakeKube, make_pod, make_vmi

TARGET = Target(make_vmi(), make_pod())
OPTS = Options(unfreeze_timeout=timedelta(minutes=5))
PY = tuple(auto.PYTHON_PROBE[:2])
VF = tuple(auto.VIRT_FREEZER_PROBE[:2])


# -- auto -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("probe,method", [
    (auto.Probe(exec_allowed=False), "api"),
    (auto.Probe(exec_allowed=False, python_libvirt=True, virt_freezer=True), "api"),
    (auto.Probe(True, python_libvirt=True, virt_freezer=True), "freezer"),
    (auto.Probe(True, python_libvirt=True), "freezer"),
    (auto.Probe(True, virt_freezer=True), "virt-freezer"),
    (auto.Probe(True), "api"),
])
def test_auto_decision_table(probe, method):
    assert auto.decide(probe) == method
    assert auto.explain(probe, method)


@pytest.mark.parametrize("py,vf,expect", [
    (ExecResult(0, "", ""), None, "freezer"),
    (ExecResult(1, "", "ModuleNotFoundError: libvirt"), ExecResult(0, "usage", ""), "virt-freezer"),
    (ExecResult(None, "", "", "exec: python3: not found"), ExecResult(2, "", "unknown flag"), "virt-freezer"),
    (ExecResult(127, "", "sh: python3: not found"), ExecResult(127, "", ""), "api"),
    (ExecResult(None, "", "", "not found"), ExecResult(None, "", "", "no such file or directory"), "api"),
])
def test_probe_reads_the_compute_container(py, vf, expect):
    kube = FakeKube()
    kube.exec_results = {PY: py, VF: vf}
    assert auto.decide(auto.probe(kube, TARGET)) == expect


def test_probe_exec_forbidden_means_api():
    kube = FakeKube()
    kube.exec_results = {PY: KubeError(403, "forbidden: pods/exec")}
    probe = auto.probe(kube, TARGET)
    assert not probe.exec_allowed and auto.decide(probe) == "api"


def test_probe_other_exec_errors_are_not_hidden():
    kube = FakeKube()
    kube.exec_results = {PY: KubeError(0, "cannot reach the Kubernetes API")}
    with pytest.raises(KubeError):
        auto.probe(kube, TARGET)


def test_prober_probes_once_per_launcher_image():
    kube = FakeKube()
    kube.exec_results = {PY: ExecResult(0, "", "")}
    prober = auto.Prober(kube)
    same_image = Target(make_vmi("b"), make_pod("b"))
    other_image = Target(make_vmi("c"), make_pod("c", image="other:v2"))
    for target in (TARGET, same_image, TARGET, other_image):
        prober.get(target)
    assert [c for c in kube.calls if c[0] == "exec"] == [("exec", "virt-launcher-vm1-abcde", PY),
                                                        ("exec", "virt-launcher-c-abcde", PY)]


def test_choose_refuses_mountpoints_without_the_freezer():
    kube = FakeKube()
    kube.exec_results = {PY: ExecResult(1, "", ""), VF: ExecResult(0, "", "")}
    with pytest.raises(Failed, match="--mountpoint needs the bundled freezer.*virt-freezer"):
        auto.choose(auto.Prober(kube), TARGET, ["/data"])


# -- bundled freezer ------------------------------------------------------------------------------
def test_bundled_command_ships_source_on_stdin_and_passes_whole_seconds():
    opts = Options(timedelta(seconds=90.2), ["/a", "/b"])
    cmd = bundled.command(TARGET, FREEZE, opts)
    assert cmd[:2] == ["python3", "-c"] and cmd[3] == str(len(bundled.payload()))
    vmi = ["--name", "vm1", "--namespace", "demo"]  # for virt-freezer, which cancels KubeVirt's timer
    assert cmd[4:] == ["freeze", "demo_vm1", *vmi, "--unfreeze-timeout", "91", "--mountpoint", "/a", "--mountpoint", "/b"]
    assert bundled.command(TARGET, UNFREEZE, opts)[4:] == ["thaw", "demo_vm1", *vmi]
    assert sum(len(a) for a in cmd) < 2000  # the source is not in the URL
    assert bundled.payload() == open(freezer.__file__, "rb").read()


def test_bundled_bootstrap_runs_the_freezer_from_stdin():
    src = bundled.payload()
    cmd = [sys.executable] + bundled.status_command(TARGET)[1:] + ["--uri", "test:///nonexistent-driver"]
    done = subprocess.run(cmd, input=src, capture_output=True, timeout=60)
    report = bundled.parse_report(done.stdout.decode())
    assert report is not None and report["action"] == "status" and report["domain"] == "demo_vm1"
    short = subprocess.run(cmd, input=src[:10], capture_output=True, timeout=60)
    assert short.returncode == 1 and "10 of" in json.loads(short.stdout)["error"]["message"]


def _report(ok=True, status="frozen", already=False, code=None, message=""):
    report = {"ok": ok, "action": "freeze", "domain": "demo_vm1", "status": status, "already": already,
              "filesystems": 2, "safety_thaw": {"deadline": "2026-01-01T00:05:00Z"}}
    if code:
        report["error"] = {"code": code, "exit_code": freezer.EXIT_CODES[code], "message": message}
    return report


def test_bundled_success_carries_the_agents_answer_and_deadline():
    out = bundled.outcome_from_report(_report(), 0, "", TARGET, FREEZE)
    assert out.ok and out.agent_status == "frozen" and out.filesystems == 2
    assert out.safety_thaw_deadline == "2026-01-01T00:05:00Z"


@pytest.mark.parametrize("code,maybe_changed,hint", [
    ("agent-not-connected", False, "qemu-guest-agent"),
    ("agent-timeout", True, "status --live"),
    ("refused", False, "refused"),
    ("no-libvirt-python", False, "--method virt-freezer or api"),
])
def test_bundled_failures_say_what_to_do(code, maybe_changed, hint):
    report = _report(ok=False, status="thawed", code=code, message="boom")
    out = bundled.outcome_from_report(report, freezer.EXIT_CODES[code], "", TARGET, FREEZE)
    assert not out.ok and out.maybe_changed == maybe_changed
    assert code in out.error.line() and hint in out.error.line()


def test_bundled_without_python3_points_to_other_methods():
    out = bundled.outcome_from_report(None, None, 'exec: "python3": executable file not found in $PATH', TARGET,
                                      FREEZE)
    assert not out.ok and not out.maybe_changed and "--method virt-freezer" in out.error.line()
    missing = bundled.outcome_from_report(None, 127, "command terminated with non-zero exit code: 127", TARGET,
                                          FREEZE, stderr="sh: python3: not found")
    assert not missing.ok and not missing.maybe_changed and "has no python3" in missing.error.line()
    timed_out = bundled.outcome_from_report(None, None, "no answer", TARGET, FREEZE, timed_out=True)
    assert timed_out.maybe_changed


def test_parse_report_takes_the_last_json_line():
    assert bundled.parse_report('noise\n{"ok": true}\n') == {"ok": True}
    assert bundled.parse_report("Traceback...\n") is None


# -- virt-freezer ----------------------------------------------------------------------------------
def test_virt_freezer_command():
    assert virt_freezer.command(TARGET, FREEZE, OPTS) == [
        "/usr/bin/virt-freezer", "--freeze", "--name", "vm1", "--namespace", "demo", "--unfreezeTimeoutSeconds", "300"]
    assert virt_freezer.command(TARGET, UNFREEZE, OPTS) == [
        "/usr/bin/virt-freezer", "--unfreeze", "--name", "vm1", "--namespace", "demo"]


def test_virt_freezer_exit_0_without_agent_is_a_failure():
    logs = json.dumps({"component": "freezer", "level": "info", "msg": "No guest agent, exiting"})
    out = virt_freezer.outcome_from_run(0, logs + "\n", "", TARGET, FREEZE, OPTS)
    assert not out.ok and "No guest agent" in out.error.line() and not out.maybe_changed


def test_virt_freezer_clean_exit_is_ok_but_unconfirmed():
    out = virt_freezer.outcome_from_run(0, "", "", TARGET, FREEZE, OPTS)
    assert out.ok and out.agent_status is None and out.safety_thaw_deadline


def test_virt_freezer_error_exit_reports_the_error_log_line():
    logs = "\n".join([json.dumps({"level": "info", "msg": "connecting"}),
                      json.dumps({"level": "error", "msg": "Failed to freeze VMI", "reason": "agent timeout"})])
    out = virt_freezer.outcome_from_run(1, logs, "", TARGET, FREEZE, OPTS)
    assert not out.ok and out.maybe_changed and "Failed to freeze VMI: agent timeout" in out.error.line()


def test_virt_freezer_missing_binary():
    out = virt_freezer.outcome_from_run(None, "", "no such file or directory", TARGET, FREEZE, OPTS)
    assert not out.ok and "--method freezer or --method api" in out.error.line()


# -- subresource API -------------------------------------------------------------------------------
def test_api_request_shapes():
    assert subresource.request(TARGET, FREEZE, OPTS) == {
        "method": "PUT", "path": "/apis/subresources.kubevirt.io/v1/namespaces/demo/virtualmachineinstances/vm1/freeze",
        "body": {"unfreezeTimeout": "5m0s"}}
    assert subresource.request(TARGET, UNFREEZE, OPTS)["body"] is None


VIRSH = ("sh", "-c")


def test_api_run_and_errors():
    kube = FakeKube()
    kube.exec_results = {VIRSH: KubeError(403, "forbidden: pods/exec")}   # the api method needs no exec
    out = get("api").run(kube, TARGET, FREEZE, OPTS, deadline=float("inf"))
    assert out.ok and ("put", "vm1", "freeze", {"unfreezeTimeout": "5m0s"}) in kube.calls
    conflict = subresource.outcome_from_error(KubeError(409, "conflict: VMI is not running"), TARGET, FREEZE)
    assert not conflict.ok and "refused to freeze" in conflict.error.line()
    # virt-api's own 400: it could not reach virt-handler, so nothing happened
    bad = subresource.outcome_from_error(KubeError(400, "unable to reach virt-launcher"), TARGET, FREEZE)
    assert not bad.maybe_changed
    forbidden = KubeError(403, "forbidden: you cannot update virtualmachineinstances/freeze")
    assert subresource.outcome_from_error(forbidden, TARGET, FREEZE).error is forbidden


def test_every_method_can_plan_without_touching_the_cluster():
    for name in ("freezer", "virt-freezer", "api"):
        plan = get(name).plan(TARGET, FREEZE, OPTS)
        assert plan
    assert get("freezer").plan(TARGET, FREEZE, OPTS)["stdin"].startswith("<kubectl_freeze/freezer.py")


WRAPPED = ("the API server failed to update virtualmachineinstances/freeze (HTTP 500) (Internal error occurred: "
           "unexpected return code 400 (400 Bad Request), message: server error. command Freeze failed: "
           "\"LibvirtError(Code=86, Domain=10, Message='Guest agent is not responding: {}')\")")


@pytest.mark.parametrize("agent_text, code, hint, maybe", [
    ("QEMU guest agent is not connected", "agent-not-connected", "install and start qemu-guest-agent", False),
    ("Guest agent not available for now", "agent-timeout", "did not answer in time", True),
])
def test_api_reads_the_launchers_libvirt_error_inside_virt_apis_500(agent_text, code, hint, maybe):
    out = subresource.outcome_from_error(KubeError(500, WRAPPED.format(agent_text)), TARGET, FREEZE)
    line = out.error.line()
    assert f"virt-launcher could not freeze demo/vm1: {code}: Guest agent is not responding: {agent_text}" in line
    assert "(libvirt error 86)" in line and hint in line and out.maybe_changed is maybe


def test_api_timeout_of_virt_api_may_still_freeze():
    exc = KubeError(500, 'Internal error occurred: Put "https://10.244.0.2:8186/v1/namespaces/demo/'
                         'virtualmachineinstances/vm1/freeze": context deadline exceeded')
    out = subresource.outcome_from_error(exc, TARGET, FREEZE)
    assert out.maybe_changed and out.detail["virtApiTimeout"] and "may still complete" in out.error.line()


@pytest.mark.parametrize("before, frozen_before, armed, deadline, note", [
    ("thawed", False, True, True, None),
    ("frozen", False, False, False, subresource.KEPT),
    (None, True, None, False, subresource.UNKNOWN),
    (None, False, True, True, None),
])
def test_api_claims_a_safety_thaw_only_when_kubevirt_armed_one(before, frozen_before, armed, deadline, note):
    vmi = make_vmi(frozen=frozen_before)
    out = subresource.succeeded(Target(vmi, make_pod()), FREEZE, OPTS, before)
    assert out.safety_thaw_armed is armed and bool(out.safety_thaw_deadline) is deadline
    assert out.safety_thaw_note == note


def test_api_sends_whole_seconds():
    opts = Options(unfreeze_timeout=timedelta(seconds=1.5))
    assert subresource.request(TARGET, FREEZE, opts)["body"] == {"unfreezeTimeout": "2s"}
