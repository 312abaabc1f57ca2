"""Issue 9 item 7: /usr/bin/virt-freezer as KubeVirt ships it (cmd/virt-freezer/virt-freezer.go,
spf13/pflag v1.0.10), run with kubectl exec in the stock launcher pod of a real guest, and the
plugin's virt-freezer method reading it (its exit code 0 never proves anything).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import KUBECTL
from tests.test_e2e_plugin import NS, error_line
from tests.test_simulator import launcher_pod, wait_for

pytestmark = pytest.mark.cluster


def virt_freezer(cluster, *args: str, vm: str = "vm2") -> subprocess.CompletedProcess:
    """virt-freezer's own stderr (without kubectl's "command terminated with exit code N")."""
    out = cluster.kubectl("exec", launcher_pod(cluster, vm), "--", "/usr/bin/virt-freezer", *args)
    out.stderr = "".join(line for line in out.stderr.splitlines(keepends=True)
                         if not line.startswith("command terminated with exit code"))
    return out


def logs(out: subprocess.CompletedProcess) -> list[dict]:
    """Every stderr line, each one KubeVirt's JSON log line."""
    return [json.loads(line) for line in out.stderr.splitlines() if line.strip()]


def freeze_args(vm: str = "vm2") -> list[str]:
    return ["--freeze", "--name", vm, "--namespace", NS]


def test_flags_are_pflags_help_exit_0_unknown_flag_and_bad_int_exit_2_in_plain_text(cluster):
    helped = virt_freezer(cluster, "--help")
    assert helped.returncode == 0
    assert helped.stderr.startswith("Usage of /usr/bin/virt-freezer:\n      --freeze ")
    assert "--unfreezeTimeoutSeconds int32   Timeout in seconds to automatically unfreeze the " \
           "VirtualMachineInstance (default 300)" in helped.stderr

    unknown = virt_freezer(cluster, *freeze_args(), "--unfreeze-timeout", "60")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines()[-1] == "unknown flag: --unfreeze-timeout"
    assert not any(line.startswith("{") for line in unknown.stderr.splitlines())

    bad = virt_freezer(cluster, *freeze_args(), "--unfreezeTimeoutSeconds", "5m")
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1] == ('invalid argument "5m" for "--unfreezeTimeoutSeconds" flag: '
                                           'strconv.ParseInt: parsing "5m": invalid syntax')
    assert cluster.guests["vm2"].agent_status() == "thawed"

    neither = virt_freezer(cluster, "--name", "vm2", "--namespace", NS)
    [entry] = logs(neither)
    assert neither.returncode == 1
    assert (entry["component"], entry["level"], entry["msg"], entry["reason"]) == \
        ("freezer", "error", "Failed to parse flags", "either --freeze or --unfreeze must be set")


def test_success_logs_the_agent_version_and_operation_completed_with_component_freezer(cluster):
    guest = cluster.guests["vm2"]
    frozen = virt_freezer(cluster, *freeze_args(), "--unfreezeTimeoutSeconds", "60")
    assert frozen.returncode == 0, frozen.stderr
    assert guest.agent_status() == "frozen"
    entries = logs(frozen)
    assert {e["component"] for e in entries} == {"freezer"}
    assert [e["msg"] for e in entries] == ["Guest agent version is 7.2.22", "Operation completed successfully"]
    thawed = virt_freezer(cluster, "--unfreeze", "--name", "vm2", "--namespace", NS)
    assert thawed.returncode == 0 and logs(thawed)[-1]["msg"] == "Operation completed successfully"
    assert guest.agent_status() == "thawed"


def test_guest_info_is_checked_before_the_domain_state(cluster):
    guest = cluster.guests["vm2"]
    cluster.sim.set_paused(NS, "vm2", True)
    try:
        paused = virt_freezer(cluster, *freeze_args())
        assert paused.returncode == 0
        assert [e["msg"] for e in logs(paused)][-1] == "VM domain not running, no need to freeze/unfreeze"

        cluster.sim.set_paused(NS, "vm2", False)
        guest.agent("kill")
        wait_for(lambda: not any(c["type"] == "AgentConnected" for c in cluster.vmi("vm2")["status"]["conditions"]),
                 what="AgentConnected to go")
        cluster.sim.set_paused(NS, "vm2", True)
        # paused AND no agent: the guest info comes first
        neither = virt_freezer(cluster, *freeze_args())
        assert neither.returncode == 0
        assert [e["msg"] for e in logs(neither)] == ["No guest agent, exiting"]
    finally:
        cluster.sim.set_paused(NS, "vm2", False)


def test_after_guest_agent_not_available_during_a_freeze_it_unfreezes(cluster):
    guest = cluster.guests["vm2"]
    guest.dom().fsFreeze(None, 0)       # frozen before, by someone else
    # no agent poller queueing its own queries in front of virt-freezer's (timing below)
    cluster.sim.hold_status_updates()
    guest.agent("stop")
    proc = subprocess.Popen([KUBECTL, "exec", launcher_pod(cluster, "vm2"), "--", "/usr/bin/virt-freezer",
                             *freeze_args()], env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        # its freeze's status query times out (5 s, "Guest agent not available for now"); the agent is
        # back before its unfreeze asks, so that unfreeze thaws the guest
        time.sleep(7.5)
        guest.agent("cont")
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr
    last = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")][-1]
    assert last["msg"] == "Freezing VMI failed, please make sure guest agent is running and try again"
    assert "Guest agent not available for now" in last["reason"]
    assert last["reason"].startswith('server error. command Freeze failed: "LibvirtError(Code=86, Domain=10, ')
    assert guest.agent_status() == "thawed"


def test_plugin_reads_virt_freezers_failure_with_the_freezers_hint(cluster):
    guest = cluster.guests["vm2"]
    cluster.sim.hold_status_updates()
    guest.agent("stop")
    out = cluster.kubectl("freeze", "vm", "vm2", "--method", "virt-freezer", "--timeout", "60s", timeout=180)
    guest.agent("cont")
    assert out.returncode == 1, out.stderr
    line = error_line(out)
    assert ("virt-freezer could not freeze e2e/vm2: Freezing VMI failed, please make sure guest agent is running "
            "and try again: agent-timeout: Guest agent is not responding: Guest agent not available for now "
            "(libvirt error 86)") in line, line
    assert "virt-freezer then asked for an unfreeze" in line
    assert "the guest agent did not answer in time" in line
    wait_for(lambda: guest.agent_status() == "thawed", 15, "the guest to be thawed")


def test_plugin_says_virt_freezer_did_nothing_when_the_domain_is_not_running(cluster):
    # The VMI looks Running to the preflight (a stale status), but the domain is paused.
    cluster.sim.hold_status_updates()
    cluster.guests["vm2"].dom().suspend()
    try:
        out = cluster.kubectl("freeze", "vm", "vm2", "--method", "virt-freezer")
    finally:
        cluster.guests["vm2"].dom().resume()
    assert out.returncode == 1, out.stderr
    line = error_line(out)
    assert "virt-freezer did not freeze e2e/vm2: VM domain not running, no need to freeze/unfreeze" in line, line
