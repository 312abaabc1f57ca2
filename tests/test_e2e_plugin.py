"""The plugin end to end (issue 4, "Must show"): the real kubectl 1.37 finds kubectl-freeze and
kubectl-unfreeze on PATH and runs them against the simulator, whose VMIs e2e/vm1 (launcher image
with python3+libvirt) and e2e/vm2 (stock image: only /usr/bin/virt-freezer) are real QEMU guests
with a real qemu-guest-agent.

What the guest really did is read from the guest itself: the agent's guest-fsfreeze-status and
the heartbeat each data disk writes every 0.2 s (a line reaches the console only once its write
returned, so a frozen filesystem shows as a stalled counter). Preflight scenarios use VMIs made
of objects only, in a namespace of their own.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
import re
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from kubectl_freeze.errors import EXIT_CODES, EXIT_FAILED, EXIT_UNCONFIRMED, EXIT_USAGE
from tests.conftest import KUBECTL
from tests.test_simulator import wait_for

pytestmark = pytest.mark.cluster

NS = "e2e"


# ----- helpers ----------------------------------------------------------------------------------
def ok(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert out.returncode == 0, f"exit {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr
    return out


def error_line(out: subprocess.CompletedProcess) -> str:
    """The run's one `error: ...` line (and there is no traceback)."""
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one error line, got:\n{out.stderr}"
    return errors[0]


def as_json(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout)


def item(report: dict, name: str) -> dict:
    [found] = [i for i in report["items"] if i["name"] == name]
    return found


def table(text: str) -> list[dict[str, str]]:
    """A kubectl-style table as rows of {HEADER: cell}, cut at the header's column starts (cells
    may hold single spaces, columns are three spaces apart)."""
    lines = [line for line in text.splitlines() if line.strip()]
    starts = [m.start() for m in re.finditer(r"(?:(?<=   )|^)\S", lines[0])]
    bounds = list(zip(starts, starts[1:] + [None]))
    headers = [lines[0][a:b].strip() for a, b in bounds]
    return [{h: line[a:b].strip() for h, (a, b) in zip(headers, bounds)} for line in lines[1:]]


def row(rows: list[dict[str, str]], name: str) -> dict[str, str]:
    [found] = [r for r in rows if r["NAME"] == name]
    return found


def freeze_field(cluster, name: str, namespace: str = NS) -> str | None:
    return cluster.sim.vmi(namespace, name)["status"].get("fsFreezeStatus")


def writes_stopped(guest, disk: int, seconds: float = 1.0) -> bool:
    time.sleep(0.3)  # a write that returned just before the freeze may still be on its way to the console
    before = guest.last_heartbeat(disk)
    time.sleep(seconds)
    return guest.last_heartbeat(disk) == before


def assert_writes_flow(guest, disk: int, timeout: float = 8.0) -> None:
    before = guest.last_heartbeat(disk)
    wait_for(lambda: guest.last_heartbeat(disk) >= before + 2, timeout, f"disk {disk} of {guest.domain} to write")


def assert_all_thawed(cluster, writes: bool = False) -> None:
    """Every real guest: the agent says thawed (and, with `writes`, its disk writes), the VMI
    status agrees."""
    for name, guest in cluster.guests.items():
        assert guest.agent_status() == "thawed", f"{name} is still frozen"
    for name, guest in cluster.guests.items():
        if writes:
            assert_writes_flow(guest, 1)
        wait_for(lambda: freeze_field(cluster, name) is None, 10, f"{name}'s fsFreezeStatus to clear")


def events(cluster) -> dict[str, dict]:
    """Every Event in the cluster, by namespace/name."""
    return {f"{e['metadata']['namespace']}/{e['metadata']['name']}": e for e in cluster.sim.store.list("events")}


def new_events_via_kubectl(cluster, before: dict, name: str) -> list[dict]:
    """The Events on VMI `name` in e2e that `kubectl get events` shows and that were not there before."""
    listed = as_json(ok(cluster.kubectl("get", "events", "-n", NS, "-o", "json")))["items"]
    fresh = [e for e in listed if f"{NS}/{e['metadata']['name']}" not in before
             and e["involvedObject"]["name"] == name]
    return sorted(fresh, key=lambda e: e["metadata"]["resourceVersion"].zfill(12))


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def popen(cluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen([KUBECTL, *args], env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def assert_status_views_agree(cluster, expect: dict[str, str]) -> None:
    """`kubectl freeze status` as a table and as JSON: same VMs, same facts; `expect` is name -> freeze."""
    shown = table(ok(cluster.kubectl("freeze", "status")).stdout)
    data = as_json(ok(cluster.kubectl("freeze", "status", "-o", "json")))
    assert data["kind"] == "FreezeStatusList"
    assert sorted(r["NAME"] for r in shown) == sorted(i["name"] for i in data["items"])
    assert list(shown[0]) == ["NAME", "PHASE", "AGENT", "FREEZE", "SINCE", "NODE", "POD"]
    for name, freeze in expect.items():
        r, i = row(shown, name), item(data, name)
        assert r["FREEZE"] == i["freeze"] == freeze
        assert r["PHASE"] == i["phase"] == "Running"
        assert r["AGENT"] == i["agent"] == "connected"
        assert r["NODE"] == i["node"] == cluster.vmi(name)["status"]["nodeName"]
        assert r["POD"] == i["pod"] == cluster.sim.pod_names(NS, name)[0]
        assert (r["SINCE"] == "-") == (i["since"] is None)


# ----- freeze, status, unfreeze of a real guest -------------------------------------------------
def test_freeze_and_unfreeze_a_real_guest_through_kubectl(cluster):
    vm1 = cluster.guests["vm1"]
    assert_status_views_agree(cluster, {"vm1": "thawed", "vm2": "thawed"})
    before = events(cluster)

    freeze = ok(cluster.kubectl("freeze", "vm", "vm1"))
    # It returned only once the VMI status showed the freeze...
    assert freeze_field(cluster, "vm1") == "frozen"
    # ...and the guest really is frozen: its agent says so and no disk gets a write through.
    assert vm1.agent_status() == "frozen"
    assert writes_stopped(vm1, 1) and writes_stopped(vm1, 2, seconds=0.5)
    [result] = table(freeze.stdout)
    assert result["NAME"] == "vm1" and result["RESULT"] == "frozen"
    assert result["CONFIRMED BY"] == "agent+vmi-status" and result["METHOD"] == "freezer"
    assert "freezing e2e/vm1 with freezer" in freeze.stderr

    assert_status_views_agree(cluster, {"vm1": "frozen", "vm2": "thawed"})
    detail = ok(cluster.kubectl("freeze", "status", "vm1")).stdout
    assert re.search(r"^Freeze \(VMI status\):\s+frozen since ", detail, re.M), detail
    assert re.search(r"^Last action:\s+FilesystemsFrozen .*\(method freezer\)", detail, re.M), detail
    live = item(as_json(ok(cluster.kubectl("freeze", "status", "vm1", "--live", "-o", "json"))), "vm1")
    assert live["live"]["status"] == "frozen" and live["freeze"] == "frozen"

    [frozen_event] = new_events_via_kubectl(cluster, before, "vm1")
    assert frozen_event["reason"] == "FilesystemsFrozen" and frozen_event["type"] == "Normal"
    assert "(kubeconfig user admin) froze" in frozen_event["message"]
    assert "method freezer" in frozen_event["message"] and "safety thaw at 20" in frozen_event["message"]
    assert frozen_event["involvedObject"]["uid"] == cluster.vmi("vm1")["metadata"]["uid"]

    thaw = ok(cluster.kubectl("unfreeze", "vm", "vm1"))
    # It returned only once the field was gone; the guest is thawed and writes again.
    assert "fsFreezeStatus" not in cluster.vmi("vm1")["status"]
    assert vm1.agent_status() == "thawed"
    assert_writes_flow(vm1, 1)
    assert_writes_flow(vm1, 2)
    [result] = table(thaw.stdout)
    assert result["RESULT"] == "thawed" and result["METHOD"] == "freezer"
    assert result["CONFIRMED BY"] == "agent+vmi-status"

    assert_status_views_agree(cluster, {"vm1": "thawed", "vm2": "thawed"})
    assert [e["reason"] for e in new_events_via_kubectl(cluster, before, "vm1")] == \
        ["FilesystemsFrozen", "FilesystemsThawed"]


def test_freeze_and_unfreeze_return_only_once_the_vmi_status_agrees(cluster):
    vm1 = cluster.guests["vm1"]
    for command, agent_says, field in (("freeze", "frozen", "frozen"), ("unfreeze", "thawed", None)):
        cluster.sim.hold_status_updates()
        proc = popen(cluster, command, "vm", "vm1", "--timeout", "60s")
        try:
            wait_for(lambda: vm1.agent_status() == agent_says, 30, f"the guest to be {agent_says}")
            time.sleep(1.0)
            assert proc.poll() is None, f"kubectl {command} returned before the VMI status showed it"
            assert freeze_field(cluster, "vm1") != field
            cluster.sim.hold_status_updates(False)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, stderr
        assert freeze_field(cluster, "vm1") == field
        assert table(stdout)[0]["CONFIRMED BY"] == "agent+vmi-status"


def test_exit_code_3_when_the_vmi_status_cannot_confirm_in_time(cluster):
    cluster.sim.hold_status_updates()
    out = cluster.kubectl("freeze", "vm", "vm1", "--timeout", "1s")
    assert out.returncode == EXIT_UNCONFIRMED == 3, out.stderr
    line = error_line(out)
    assert line.startswith("error: froze e2e/vm1 with freezer (the guest agent answered frozen) but the VMI status "
                           "did not show frozen within 1s; last seen: no fsFreezeStatus (thawed)"), line
    assert "kubectl freeze status vm1 -n e2e" in line
    assert table(out.stdout)[0]["RESULT"] == "unconfirmed"
    # It did freeze: the guest says so, even though the VMI status never showed it.
    assert cluster.guests["vm1"].agent_status() == "frozen"
    assert freeze_field(cluster, "vm1") is None


# ----- methods ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method,vm", [("freezer", "vm1"), ("virt-freezer", "vm1"), ("virt-freezer", "vm2"),
                                       ("api", "vm1"), ("api", "vm2")])
def test_each_method_freezes_and_thaws_a_real_guest(cluster, method, vm):
    guest = cluster.guests[vm]
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", vm, "--method", method, "-o", "json"))), vm)
    assert frozen["result"] == "frozen" and frozen["method"] == method
    assert frozen["vmiStatus"]["fsFreezeStatus"] == "frozen" and frozen["vmiStatus"]["confirmed"]
    # The bundled freezer hears the agent's own answer, and virt-freezer's exit 0 (no proof) is
    # followed by asking the agent with virsh; the API path is confirmed by the VMI status alone.
    assert frozen["confirmedBy"] == (["vmi-status"] if method == "api" else ["agent", "vmi-status"])
    assert frozen["safetyThaw"]["after"] == "5m0s"
    assert guest.agent_status() == "frozen"
    assert writes_stopped(guest, 1, seconds=0.8)

    thawed = item(as_json(ok(cluster.kubectl("unfreeze", "vm", vm, "--method", method, "-o", "json"))), vm)
    assert thawed["result"] == "thawed" and thawed["method"] == method
    assert thawed["vmiStatus"]["fsFreezeStatus"] is None and thawed["vmiStatus"]["confirmed"]
    assert guest.agent_status() == "thawed"
    assert_writes_flow(guest, 1)


def test_a_status_left_from_before_does_not_confirm_a_freeze(cluster):
    # A safety thaw leaves the VMI showing "frozen" until the next poll. A freeze right then must
    # not count that stale status as its confirmation (tests/test_runner_unit.py: nor skip a rollback).
    cluster.sim.hold_status_updates(True)
    guest = cluster.guests["vm1"]
    guest.dom().fsFreeze(None, 0)
    cluster.sim.hold_status_updates(False)
    wait_for(lambda: freeze_field(cluster, "vm1") == "frozen", what="the status to show frozen")
    cluster.sim.hold_status_updates(True)
    guest.dom().fsThaw(None, 0)           # the VMI still says frozen: it is held
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "-o", "json"))), "vm1")
    assert frozen["confirmedBy"] == ["agent"]
    assert any("already showed frozen before" in w for w in frozen["warnings"])
    assert guest.agent_status() == "frozen"


def test_freezer_method_on_the_stock_image_fails_cleanly(cluster):
    out = cluster.kubectl("freeze", "vm", "vm2", "--method", "freezer")
    assert out.returncode == EXIT_FAILED
    line = error_line(out)
    assert "has no python3" in line and "use --method virt-freezer or --method api" in line
    assert_all_thawed(cluster)


def test_auto_picks_the_method_per_launcher_image_and_the_api_when_exec_is_forbidden(cluster):
    report = as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "vm2", "-o", "json")))
    vm1, vm2 = item(report, "vm1"), item(report, "vm2")
    assert (vm1["method"], vm2["method"]) == ("freezer", "virt-freezer")
    assert vm1["methodReason"] == "the compute container has python3 with libvirt"
    assert vm2["methodReason"] == "the compute container has no python3 with libvirt but has /usr/bin/virt-freezer"
    assert all(g.agent_status() == "frozen" for g in cluster.guests.values())
    thaw = table(ok(cluster.kubectl("unfreeze", "vm", "vm1", "vm2")).stdout)
    assert [(r["NAME"], r["RESULT"], r["METHOD"]) for r in thaw] == \
        [("vm1", "thawed", "freezer"), ("vm2", "thawed", "virt-freezer")]
    assert all(g.agent_status() == "thawed" for g in cluster.guests.values())

    # A user who may not exec into pods: auto goes through the subresource API, and says so.
    out = ok(cluster.kubectl("freeze", "vm", "vm1", "vm2", "--context", "no-exec"))
    assert [(r["NAME"], r["RESULT"], r["METHOD"]) for r in table(out.stdout)] == \
        [("vm1", "frozen", "api"), ("vm2", "frozen", "api")]
    assert "freezing e2e/vm1 with api" in out.stderr and "freezing e2e/vm2 with api" in out.stderr
    assert all(g.agent_status() == "frozen" for g in cluster.guests.values())
    report = as_json(ok(cluster.kubectl("unfreeze", "vm", "vm1", "vm2", "--context", "no-exec", "-o", "json")))
    for vm in ("vm1", "vm2"):
        assert item(report, vm)["method"] == "api" and item(report, vm)["result"] == "thawed"
        assert item(report, vm)["methodReason"] == "exec into the launcher pod is forbidden, so the subresource API"
    assert_all_thawed(cluster, writes=True)


def test_mountpoint_freezes_only_that_filesystem(cluster):
    vm1 = cluster.guests["vm1"]
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "--mountpoint", "/mnt/data1", "-o", "json"))),
                  "vm1")
    assert frozen["method"] == "freezer" and frozen["agent"]["filesystems"] == 1
    assert vm1.agent_status() == "frozen"
    time.sleep(0.3)
    before1, before2 = vm1.last_heartbeat(1), vm1.last_heartbeat(2)
    time.sleep(1.2)
    assert vm1.last_heartbeat(1) == before1, "/mnt/data1 kept writing"
    assert vm1.last_heartbeat(2) >= before2 + 2, "/mnt/data2 stopped writing"
    ok(cluster.kubectl("unfreeze", "vm", "vm1"))
    assert_writes_flow(vm1, 1)


# ----- safety thaw ------------------------------------------------------------------------------
@pytest.mark.parametrize("method,vm", [("freezer", "vm1"), ("api", "vm1"), ("virt-freezer", "vm2")])
def test_unfreeze_timeout_thaws_the_guest_by_itself(cluster, method, vm):
    guest = cluster.guests[vm]
    launcher = cluster.sim.vmis[(NS, vm)].launcher
    timer_thaws = launcher.safety_thaws
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", vm, "--method", method, "--unfreeze-timeout", "3s",
                                             "-o", "json"))), vm)
    assert frozen["result"] == "frozen" and frozen["safetyThaw"]["after"] == "3s"
    deadline = epoch(frozen["safetyThaw"]["deadline"])
    wait_for(lambda: guest.agent_status() == "thawed", 20, f"the safety thaw of {vm}")
    assert time.time() >= deadline - 1.5, "thawed well before the safety-thaw deadline"
    assert_writes_flow(guest, 1)
    wait_for(lambda: freeze_field(cluster, vm) is None, 10, "the VMI status to clear")
    # The freezer's own watchdog in the pod thawed it; virt-launcher's timer did for the others.
    assert launcher.safety_thaws == timer_thaws + (0 if method == "freezer" else 1)


# ----- several VMs: all or none -----------------------------------------------------------------
@pytest.mark.parametrize("how", ["names", "selector"])
def test_group_freeze_with_one_vm_that_cannot_freeze_leaves_every_guest_thawed(cluster, how):
    # Passes preflight (Running, agent connected) but has no libvirt domain: fails at libvirt.
    cluster.sim.add_vmi(NS, "broken", guest=None, labels={"tier": "db"})
    try:
        before = events(cluster)
        which = ["vm1", "vm2", "broken"] if how == "names" else ["-l", "tier=db"]
        out = cluster.kubectl("freeze", "vm", *which, "-o", "json")
        assert out.returncode == EXIT_FAILED
        line = error_line(out)
        assert line.startswith("error: 1 of 3 VMs failed to freeze; could not freeze e2e/broken: domain-not-found"), line
        assert line.endswith("thawed again: e2e/vm1, e2e/vm2"), line
        report = as_json(out)
        assert report["exitCode"] == EXIT_FAILED
        assert item(report, "broken")["result"] == "failed"
        for vm in ("vm1", "vm2"):
            # Each real guest was frozen by this run, then thawed again.
            assert item(report, vm)["result"] == "rolled-back"
            assert item(report, vm)["agent"] is None or item(report, vm)["agent"]["status"] == "frozen"
            assert item(report, vm)["rollback"]["result"] == "thawed"
        assert_all_thawed(cluster, writes=True)
        reasons = sorted((e["involvedObject"]["name"], e["reason"]) for k, e in events(cluster).items()
                         if k not in before)
        assert reasons == [("broken", "FreezeFailed"), ("vm1", "FilesystemsFrozen"), ("vm1", "FreezeRolledBack"),
                           ("vm2", "FilesystemsFrozen"), ("vm2", "FreezeRolledBack")]
    finally:
        cluster.sim.remove_vmi(NS, "broken")


# ----- preconditions and bad input: one error line, the documented code, nothing changed ---------
def _closed_port_kubeconfig(cluster, tmp_path: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "closed-port-config"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _object_only(setup):
    """A scenario on a VMI made of objects only, named x in a fresh namespace."""
    def scenario(cluster, tmp_path):
        ns = cluster.fresh_namespace()
        setup(cluster, ns)
        return ["freeze", "vm", "x", "-n", ns]
    return scenario


PRECONDITIONS = {
    "vmi-not-found": (
        lambda cluster, tmp_path: ["freeze", "vm", "ghost", "-n", cluster.fresh_namespace()],
        EXIT_FAILED, ["VirtualMachineInstance 'ghost' not found in namespace 't-", "kubectl get vmi -n t-"]),
    "unfreeze-vmi-not-found": (
        lambda cluster, tmp_path: ["unfreeze", "vm", "ghost"],
        EXIT_FAILED, ["VirtualMachineInstance 'ghost' not found in namespace 'e2e'"]),
    "only-a-stopped-vm": (
        _object_only(lambda cluster, ns: cluster.sim.add_stopped_vm(ns, "x")),
        EXIT_FAILED, ["VirtualMachine t-", "/x exists but has no running instance (Stopped)", "virtctl start x"]),
    "paused": (
        _object_only(lambda cluster, ns: (cluster.sim.add_vmi(ns, "x"), cluster.sim.set_paused(ns, "x", True))),
        EXIT_FAILED, ["/x is paused, so its guest agent cannot answer", "virtctl unpause vm x"]),
    "not-running": (
        _object_only(lambda cluster, ns: (cluster.sim.add_vmi(ns, "x"), cluster.sim.set_phase(ns, "x", "Scheduling"))),
        EXIT_FAILED, ["/x is Scheduling, not Running"]),
    "stopped-vmi": (
        _object_only(lambda cluster, ns: (cluster.sim.add_vmi(ns, "x"), cluster.sim.set_phase(ns, "x", "Succeeded"))),
        EXIT_FAILED, ["/x has stopped (phase Succeeded)"]),
    "migrating": (
        _object_only(lambda cluster, ns: (cluster.sim.add_vmi(ns, "x"), cluster.sim.start_migration(ns, "x"))),
        EXIT_FAILED, ["/x is migrating to node node02", "KubeVirt refuses to freeze during a migration"]),
    "no-agent": (
        _object_only(lambda cluster, ns: cluster.sim.add_vmi(ns, "x", agent_connected=False)),
        EXIT_FAILED, ["/x has no connected guest agent (no AgentConnected condition)", "qemu-guest-agent"]),
    "bad-duration": (
        lambda cluster, tmp_path: ["freeze", "vm", "vm1", "--unfreeze-timeout", "5x"],
        EXIT_USAGE, ["--unfreeze-timeout", "5x"]),
    "bad-timeout": (
        lambda cluster, tmp_path: ["freeze", "vm", "vm1", "--timeout", "soon"],
        EXIT_USAGE, ["--timeout", "soon"]),
    "zero-unfreeze-timeout-unconfirmed": (
        lambda cluster, tmp_path: ["freeze", "vm", "vm1", "--unfreeze-timeout", "0"],
        EXIT_USAGE, ["--unfreeze-timeout 0 disables the safety thaw", "add --no-safety-thaw to confirm"]),
    "bad-name": (
        lambda cluster, tmp_path: ["freeze", "vm", "Bad_Name"],
        EXIT_USAGE, ["invalid name 'Bad_Name'"]),
    "bad-kind": (
        lambda cluster, tmp_path: ["freeze", "vm", "pod/vm1"],
        EXIT_USAGE, ["invalid name 'pod/vm1'", "'pod' is not a VM kind"]),
    "unknown-context": (
        lambda cluster, tmp_path: ["freeze", "vm", "vm1", "--context", "nope"],
        EXIT_USAGE, ["context 'nope' is not in the kubeconfig"]),
    "unreachable-cluster": (
        lambda cluster, tmp_path: ["freeze", "vm", "vm1", "--kubeconfig", _closed_port_kubeconfig(cluster, tmp_path)],
        EXIT_FAILED, ["cannot reach the Kubernetes API at https://127.0.0.1:", "--context/--kubeconfig"]),
    "forbidden": (
        lambda cluster, tmp_path: ["freeze", "vm", "vm1", "--context", "viewer"],
        EXIT_FAILED, ["forbidden: you cannot update virtualmachineinstances/freeze.subresources.kubevirt.io",
                      "ask an admin to grant 'update' on 'virtualmachineinstances/freeze'"]),
}


@pytest.mark.parametrize("case", list(PRECONDITIONS))
def test_precondition_failures_say_why_and_change_nothing(cluster, tmp_path, case):
    setup, code, expected = PRECONDITIONS[case]
    args = setup(cluster, tmp_path)
    before = events(cluster)
    out = cluster.kubectl(*args)
    assert out.returncode == code, f"exit {out.returncode}: {out.stderr}"
    assert code in EXIT_CODES
    line = error_line(out)
    for text in expected:
        assert text in line, line
    if case != "forbidden":
        # Refused before anything was tried: nothing but the error line.
        assert out.stderr.splitlines() == [line] and out.stdout == ""
    assert events(cluster) == before
    assert_all_thawed(cluster)


def test_a_paused_real_guest_is_refused_and_left_as_it_was(cluster):
    cluster.sim.set_paused(NS, "vm1", True)
    try:
        before = events(cluster)
        out = cluster.kubectl("freeze", "vm", "vm1", "vm2")
        assert out.returncode == EXIT_FAILED
        line = error_line(out)
        assert line.startswith("error: 1 of 2 VMs cannot be frozen, so none was: VMI e2e/vm1 is paused"), line
        assert out.stderr.splitlines() == [line]
        assert events(cluster) == before
    finally:
        cluster.sim.set_paused(NS, "vm1", False)
    assert_all_thawed(cluster)


@pytest.mark.parametrize("command", ["freeze", "unfreeze"])
def test_help_documents_the_exit_codes(cluster, command):
    out = ok(cluster.kubectl(command, "--help"))
    text = " ".join(out.stdout.split())
    assert f"Usage: kubectl {command} " in text
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text


# ----- warnings, dry run, output, no-wait -------------------------------------------------------
def test_a_windows_vmi_gets_the_vss_warning(cluster):
    ns = cluster.fresh_namespace()
    cluster.sim.add_vmi(ns, "win", guest=None, windows=True)
    out = ok(cluster.kubectl("freeze", "vm", "win", "-n", ns, "--dry-run"))
    assert (f"warning: {ns}/win runs Windows: VSS holds a freeze for only about 10 seconds, after which writes go "
            "on while the guest agent still says frozen; take the backup within 10 s (the unfreeze exits 4 when the "
            "freeze did not hold)") in out.stderr.splitlines()
    detail = ok(cluster.kubectl("freeze", "status", "win", "-n", ns)).stdout
    assert "(VSS: a freeze lasts about 10s)" in detail
    # A real freeze attempt warns too (this object-only VMI then fails at libvirt).
    out = cluster.kubectl("freeze", "vm", "win", "-n", ns)
    assert out.returncode == EXIT_FAILED and "VSS holds a freeze for only about 10 seconds" in out.stderr


def test_dry_run_prints_the_plan_and_changes_nothing(cluster):
    before = events(cluster)
    versions = {vm: cluster.vmi(vm)["metadata"]["resourceVersion"] for vm in cluster.guests}
    out = ok(cluster.kubectl("freeze", "vm", "vm1", "vm2", "--dry-run"))
    pod1, pod2 = cluster.sim.pod_names(NS, "vm1")[0], cluster.sim.pod_names(NS, "vm2")[0]
    lines = out.stdout.splitlines()
    assert lines[0] == "e2e/vm1: would freeze with method freezer (the compute container has python3 with libvirt)"
    assert lines[1].startswith(f"  exec in pod {pod1} container compute: python3 -c ")
    assert lines[1].endswith(" freeze e2e_vm1 --name vm1 --namespace e2e --unfreeze-timeout 300")
    assert lines[2].startswith("e2e/vm2: would freeze with method virt-freezer")
    assert lines[3] == (f"  exec in pod {pod2} container compute: /usr/bin/virt-freezer --freeze --name vm2 "
                        "--namespace e2e --unfreezeTimeoutSeconds 300")
    assert lines[-1] == "dry run: nothing was changed"

    plan = as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "--dry-run", "--method", "api",
                                      "--unfreeze-timeout", "90s", "-o", "json")))
    assert plan["kind"] == "FreezePlan" and plan["exitCode"] == 0
    assert item(plan, "vm1")["result"] == "planned"
    assert item(plan, "vm1")["plan"]["request"] == {
        "method": "PUT", "path": "/apis/subresources.kubevirt.io/v1/namespaces/e2e/virtualmachineinstances/vm1/freeze",
        "body": {"unfreezeTimeout": "1m30s"}}
    unfreeze = ok(cluster.kubectl("unfreeze", "vm", "vm2", "--dry-run")).stdout
    assert "/usr/bin/virt-freezer --unfreeze --name vm2 --namespace e2e" in unfreeze

    assert events(cluster) == before
    assert {vm: cluster.vmi(vm)["metadata"]["resourceVersion"] for vm in cluster.guests} == versions
    assert_all_thawed(cluster)


def test_no_wait_returns_without_waiting_for_the_vmi_status(cluster):
    vm1 = cluster.guests["vm1"]
    cluster.sim.hold_status_updates()
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "--no-wait", "-o", "json"))), "vm1")
    assert frozen["result"] == "frozen" and frozen["confirmedBy"] == ["agent"] and frozen["vmiStatus"] is None
    assert vm1.agent_status() == "frozen"
    assert freeze_field(cluster, "vm1") is None      # the status never showed it, and nobody waited for it
    thawed = item(as_json(ok(cluster.kubectl("unfreeze", "vm", "vm1", "--no-wait", "-o", "json"))), "vm1")
    assert thawed["result"] == "thawed" and thawed["vmiStatus"] is None
    assert vm1.agent_status() == "thawed"


def test_output_formats_aliases_and_quiet(cluster):
    out = ok(cluster.kubectl("freeze", "vmi", "vm/vm1", "-q", "-o", "name"))
    assert out.stdout == "virtualmachineinstance.kubevirt.io/vm1\n" and out.stderr == ""
    assert cluster.guests["vm1"].agent_status() == "frozen"
    as_yaml = yaml.safe_load(ok(cluster.kubectl("freeze", "status", "-o", "yaml")).stdout)
    assert as_yaml == as_json(ok(cluster.kubectl("freeze", "status", "-o", "json")))
    assert item(as_yaml, "vm1")["freeze"] == "frozen"
    everywhere = ok(cluster.kubectl("freeze", "status", "-A", "--no-headers")).stdout.splitlines()
    assert any(re.match(r"e2e\s+vm1\s+Running\s+connected\s+frozen\s", line) for line in everywhere), everywhere
    assert not any(line.startswith("NAMESPACE") for line in everywhere)
    out = ok(cluster.kubectl("unfreeze", "vmi", "vm1", "-q"))
    assert out.stderr == "" and table(out.stdout)[0]["RESULT"] == "thawed"
    assert cluster.guests["vm1"].agent_status() == "thawed"


def test_live_status_on_a_stock_image_asks_the_agent_through_virsh(cluster):
    # The stock launcher image has no python3 for the freezer: --live reads the agent with virsh.
    cluster.guests["vm2"].dom().fsFreeze(None, 0)
    live = item(as_json(ok(cluster.kubectl("freeze", "status", "vm2", "--live", "-o", "json"))), "vm2")
    assert live["live"]["status"] == "frozen"
    assert live["live"]["source"] == "guest-agent (virsh)"
    cluster.guests["vm2"].dom().fsThaw(None, 0)
    live = item(as_json(ok(cluster.kubectl("freeze", "status", "vm2", "--live", "-o", "json"))), "vm2")
    assert live["live"]["status"] == "thawed"


@contextmanager
def freeze_waiting_for_status(cluster, *args: str):
    """`kubectl freeze vm ARGS` in the background, caught while it waits for the VMI status:
    the status updates are held until the body of the `with` has done its part."""
    cluster.sim.hold_status_updates(True)
    proc = subprocess.Popen([KUBECTL, "freeze", "vm", *args, "--timeout", "60s"], env=cluster.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: cluster.guests["vm1"].agent_status() == "frozen", timeout=30, what="the freeze")
        time.sleep(0.5)
        yield proc
        time.sleep(0.5)
        cluster.sim.hold_status_updates(False)
        proc.stdout_text, proc.stderr_text = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("disruption", ["dropped watch", "apiserver restart", "410 Gone"])
def test_freeze_is_still_confirmed_when_the_watch_is_disrupted(cluster, disruption):
    # The plugin is mid-watch when the disruption comes; it must re-watch (or re-list after
    # 410) and still confirm.
    with freeze_waiting_for_status(cluster, "vm1") as proc:
        if disruption == "apiserver restart":
            cluster.sim.server.restart()
        else:
            if disruption == "410 Gone":
                cluster.sim.store.mutate("virtualmachineinstances", NS, "vm2",
                                         lambda o: o["metadata"].setdefault("annotations", {}).update(x="1"))
                cluster.sim.store.compact()
            cluster.sim.server.drop_watches()
    assert proc.returncode == 0, proc.stderr_text
    assert "agent+vmi-status" in proc.stdout_text and "Traceback" not in proc.stderr_text


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_during_a_group_freeze_thaws_what_the_run_froze(cluster, signal_name):
    import signal

    with freeze_waiting_for_status(cluster, "vm1", "vm2", "--parallel", "1") as proc:
        # kubectl execs the plugin in its own process, so the signal reaches the plugin.
        proc.send_signal(getattr(signal, signal_name))
    assert proc.returncode == 130, proc.stderr_text
    out = subprocess.CompletedProcess(proc.args, proc.returncode, "", proc.stderr_text)
    assert error_line(out) == "error: interrupted; thawed again: e2e/vm1"
    assert cluster.guests["vm1"].agent_status() == "thawed"
    assert cluster.guests["vm2"].agent_status() == "thawed"
