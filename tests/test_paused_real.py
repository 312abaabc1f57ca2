"""Paused VMs (issue 9 item 11 and, from item 10, the thaw of a paused guest), on the real guests.

KubeVirt 1.6+ (PR #15001, backported to 1.5) counts a freeze of a paused VMI a success: nothing is
frozen or flushed. The plugin never claims a flushed filesystem for a paused guest: `freeze vm`
refuses a paused VM (nothing changed) unless `--skip-paused`, which leaves paused VMs alone and
reports each as `skipped` with the reason, while the others are frozen. A thaw of a paused guest
fails at once (libvirt: "domain is not running"): the plugin says so at once, and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kubectl_freeze.errors import EXIT_FAILED
from tests.test_e2e_plugin import NS, as_json, error_line, events, item, ok, row, table

pytestmark = pytest.mark.cluster

# method -> the e2e VM it runs on (vm2's launcher image is the stock one: no python3)
VMS = {"freezer": "vm1", "api": "vm1", "virt-freezer": "vm2"}


@contextmanager
def paused(cluster, name: str) -> Iterator[None]:
    """virtctl pause: the real domain is suspended and the VMI has the Paused condition."""
    cluster.sim.set_paused(NS, name, True)
    try:
        yield
    finally:
        cluster.sim.set_paused(NS, name, False)


def test_kubevirt_counts_a_freeze_of_a_paused_vmi_a_success_and_freezes_nothing(cluster):
    launcher = cluster.sim.vmis[(NS, "vm1")].launcher
    path = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/vm1/freeze"
    fired = launcher.safety_thaws       # counted over the session
    with paused(cluster, "vm1"):
        out = cluster.kubectl("replace", "--raw", path, "-f", "-", input='{"unfreezeTimeout": "2s"}')
        assert out.returncode == 0, out.stderr
        time.sleep(2.5)     # a safety timer, had one been armed, would have fired meanwhile
    assert cluster.guests["vm1"].agent_status() == "thawed"
    assert launcher.safety_thaws == fired


def test_skip_paused_freezes_the_others_and_reports_the_paused_vm_skipped(cluster):
    before = events(cluster)
    with paused(cluster, "vm1"):
        out = cluster.kubectl("freeze", "vm", "-l", "tier=db", "--skip-paused", "-o", "json")
        assert out.returncode == 0, out.stderr
        vm1, vm2 = item(as_json(out), "vm1"), item(as_json(out), "vm2")
        # Never a claim of a flushed filesystem for the paused guest:
        assert vm1["result"] == "skipped" and vm1["ok"] is False and vm1["confirmedBy"] == []
        assert vm1["method"] is None and vm1["safetyThaw"] is None
        assert "crash-consistent" in vm1["skipped"] and "not flushed" in vm1["skipped"]
        assert f"warning: {NS}/vm1 is skipped: paused: it writes nothing while paused" in out.stderr
        assert vm2["result"] == "frozen" and "agent" in vm2["confirmedBy"]
        assert cluster.guests["vm2"].agent_status() == "frozen"
        # Nothing was sent for vm1: only vm2 got an Event.
        fresh = [e for k, e in events(cluster).items() if k not in before]
        assert {e["involvedObject"]["name"] for e in fresh} == {"vm2"}

        thawed = cluster.kubectl("unfreeze", "vm", "-l", "tier=db", "--skip-paused")
        assert thawed.returncode == 0, thawed.stderr
        rows = table(thawed.stdout)
        assert row(rows, "vm1")["RESULT"] == "skipped (paused)" and row(rows, "vm2")["RESULT"] == "thawed"
    assert cluster.guests["vm2"].agent_status() == "thawed"
    assert cluster.guests["vm1"].agent_status() == "thawed"      # it was never frozen


def test_without_skip_paused_a_group_with_a_paused_vm_is_refused_and_says_how_through(cluster):
    with paused(cluster, "vm1"):
        out = cluster.kubectl("freeze", "vm", "-l", "tier=db")
        assert out.returncode == EXIT_FAILED
        assert "VMI e2e/vm1 is paused" in error_line(out) and "--skip-paused" in error_line(out)
    assert cluster.guests["vm2"].agent_status() == "thawed"


@pytest.mark.parametrize("method", list(VMS))
def test_a_thaw_of_a_paused_guest_fails_at_once_and_says_why(cluster, method):
    vm = VMS[method]
    ok(cluster.kubectl("freeze", "vm", vm, "--method", method))
    with paused(cluster, vm):
        started = time.monotonic()
        out = cluster.kubectl("unfreeze", "vm", vm, "--method", method)
        took = time.monotonic() - started
        assert out.returncode == EXIT_FAILED, out.stderr
        line = error_line(out)
        assert f"error: {NS}/{vm} is paused, so it cannot be thawed now (" in line, line
        assert f"unpause it (virtctl unpause vm {vm} -n {NS}), then run kubectl unfreeze vm {vm}" in line
        assert "wait" not in out.stderr, out.stderr      # no promise that it waits for the guest
        assert took < 10, f"the thaw of a paused guest took {took:.1f}s"
        print(f"thaw of a paused guest with {method}: failed after {took:.2f}s")
        # Frozen and paused is never skipped: --skip-paused still reports it failed.
        out = cluster.kubectl("unfreeze", "vm", vm, "--method", method, "--skip-paused", "-o", "json")
        assert out.returncode == EXIT_FAILED and item(as_json(out), vm)["result"] == "failed"
    assert cluster.guests[vm].agent_status() == "frozen"
    ok(cluster.kubectl("unfreeze", "vm", vm, "--method", method))
    assert cluster.guests[vm].agent_status() == "thawed"
