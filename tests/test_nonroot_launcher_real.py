"""Non-root launchers, KubeVirt's default (issue 9 item 5), and root ones, on real guests.

A non-root virt-launcher pod (`status.runtimeUser: 107`) runs its compute container as uid/gid
107 with no capabilities and no privilege escalation, with KubeVirt's XDG_* variables and a HOME
that does not exist, and its libvirt answers only at
qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock. A root launcher (the Root feature
gate, runtimeUser 0) has the system virtqemud: qemu:///system, and the /session URI answers too.
Every method, `freeze status --live` and the freezer's safety-thaw watchdog must work on both.

The e2e VMIs vm1 (python image) and vm2 (stock image) are non-root launchers; the `runtime`
fixture relaunches them as root launchers for the root case (same real guests, new pods).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.kubevirt.objects import NONROOT_UID
from tests.conftest import _wait_agents_connected
from tests.test_e2e_plugin import as_json, assert_writes_flow, epoch, item, ok, writes_stopped
from tests.test_simulator import wait_for

pytestmark = pytest.mark.cluster

NS = "e2e"
SESSION_URI = "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock"
SYSTEM_URI = "qemu:///system"
# What the e2e fixture launches (tests/conftest.py).
E2E_VMIS = {"vm1": "python", "vm2": "stock"}


def relaunch(cluster, runtime_user: int) -> None:
    """vm1 and vm2 again, with launcher pods of this runtime user (the guests keep running)."""
    for name, image in E2E_VMIS.items():
        cluster.sim.remove_vmi(NS, name)
        cluster.sim.add_vmi(NS, name, cluster.guests[name], image=image, labels={"tier": "db"},
                            runtime_user=runtime_user)
    _wait_agents_connected(cluster)


@pytest.fixture(params=["nonroot", "root"])
def runtime(request, cluster) -> int:
    """The runtime user of vm1's and vm2's launcher pods: 107 (the default) or 0."""
    uid = NONROOT_UID if request.param == "nonroot" else 0
    if uid != NONROOT_UID:
        relaunch(cluster, uid)
    try:
        yield uid
    finally:
        if uid != NONROOT_UID:
            cluster.sim.reset()
            relaunch(cluster, NONROOT_UID)


def pod_of(cluster, vm: str) -> str:
    return cluster.sim.pod_names(NS, vm)[-1]


def in_compute(cluster, vm: str, script: str) -> str:
    """Runs a shell script in vm's compute container through the real kubectl exec."""
    return ok(cluster.kubectl("exec", pod_of(cluster, vm), "-c", "compute", "--", "sh", "-c", script)).stdout


# ----- the container is what KubeVirt makes it --------------------------------------------------
def test_the_compute_container_runs_as_the_vmis_runtime_user(cluster, runtime):
    vmi = cluster.vmi("vm1")
    assert vmi["status"]["runtimeUser"] == runtime
    pod = cluster.sim.store.get("pods", NS, pod_of(cluster, "vm1"))
    [compute] = [c for c in pod["spec"]["containers"] if c["name"] == "compute"]
    seen = in_compute(cluster, "vm1", "id -u; id -g; id -un; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status;"
                                      " echo HOME=$HOME; test -e \"$HOME\" && echo home-exists;"
                                      " echo XDG=$XDG_RUNTIME_DIR,$XDG_CONFIG_HOME; ls /var/run/libvirt").split()
    if runtime:
        assert pod["spec"]["securityContext"] == {"runAsUser": 107, "runAsGroup": 107, "runAsNonRoot": True,
                                                  "fsGroup": 107}
        assert compute["securityContext"]["allowPrivilegeEscalation"] is False
        assert compute["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
        assert seen[:3] == ["107", "107", "qemu"]
        assert seen[3:7] == ["CapEff:", "0000000000000000", "NoNewPrivs:", "1"]
        assert seen[7:9] == ["HOME=/home/qemu", "XDG=/var/run,/var/run/kubevirt-private"]   # no home-exists
        assert seen[9:] == ["virtqemud-sock"]
    else:
        assert pod["spec"]["securityContext"] == {"runAsUser": 0}
        assert seen[:3] == ["0", "0", "root"]
        assert seen[7] == "HOME=/root" and "virtqemud-sock" in seen[9:]
    # The URI KubeVirt's virt-launcher itself uses reaches the real guest; a non-root launcher's
    # unprivileged virtqemud refuses qemu:///system, a root one's answers /session too.
    uri = SESSION_URI if runtime else SYSTEM_URI
    assert in_compute(cluster, "vm1", f"virsh -c '{uri}' domstate e2e_vm1").strip() == "running"
    other = cluster.kubectl("exec", pod_of(cluster, "vm1"), "-c", "compute", "--",
                            "virsh", "-c", SYSTEM_URI if runtime else SESSION_URI, "domstate", "e2e_vm1")
    if runtime:
        assert other.returncode == 1
        assert "unexpected QEMU URI path '/system', try qemu:///session" in other.stderr
    else:
        assert other.returncode == 0 and other.stdout.strip() == "running"


# ----- every method, on both kinds of launcher --------------------------------------------------
@pytest.mark.parametrize("method,vm,expect", [
    ("freezer", "vm1", "freezer"), ("virt-freezer", "vm1", "virt-freezer"), ("virt-freezer", "vm2", "virt-freezer"),
    ("api", "vm1", "api"), ("auto", "vm1", "freezer"), ("auto", "vm2", "virt-freezer")])
def test_each_method_freezes_and_thaws_on_this_launcher(cluster, runtime, method, vm, expect):
    guest = cluster.guests[vm]
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", vm, "--method", method, "-o", "json"))), vm)
    assert frozen["result"] == "frozen" and frozen["method"] == expect, frozen
    assert frozen["pod"] == pod_of(cluster, vm)
    assert frozen["confirmedBy"] == (["vmi-status"] if expect == "api" else ["agent", "vmi-status"])
    assert guest.agent_status() == "frozen"
    assert writes_stopped(guest, 1, seconds=0.8)

    thawed = item(as_json(ok(cluster.kubectl("unfreeze", "vm", vm, "--method", method, "-o", "json"))), vm)
    assert thawed["result"] == "thawed" and thawed["method"] == expect, thawed
    assert guest.agent_status() == "thawed"
    assert_writes_flow(guest, 1)


@pytest.mark.parametrize("vm,source", [("vm1", "guest-agent"), ("vm2", "guest-agent (virsh)")])
def test_live_status_asks_the_agent_on_this_launcher(cluster, runtime, vm, source):
    guest = cluster.guests[vm]
    guest.dom().fsFreeze(None, 0)
    try:
        live = item(as_json(ok(cluster.kubectl("freeze", "status", vm, "--live", "-o", "json"))), vm)
        assert live["live"]["status"] == "frozen" and live["live"]["source"] == source, live
    finally:
        guest.dom().fsThaw(None, 0)
    live = item(as_json(ok(cluster.kubectl("freeze", "status", vm, "--live", "-o", "json"))), vm)
    assert live["live"]["status"] == "thawed"


def test_the_freezers_safety_thaw_runs_and_thaws_as_the_runtime_user(cluster, runtime):
    guest = cluster.guests["vm1"]
    launcher = cluster.sim.vmis[(NS, "vm1")].launcher
    # --no-wait: the run returns on the agent's answer, well before the deadline on a busy machine.
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "freezer", "--no-wait",
                                             "--unfreeze-timeout", "8s", "-o", "json"))), "vm1")
    assert frozen["result"] == "frozen"
    deadline = epoch(frozen["safetyThaw"]["deadline"])
    assert time.time() < deadline - 2, "too slow to look at the watchdog before it fires"
    # The watchdog outlived its exec session, as the container's user; --live sees it.
    live = item(as_json(ok(cluster.kubectl("freeze", "status", "vm1", "--live", "-o", "json"))), "vm1")
    watchdog = live["live"]["safetyThaw"]
    assert watchdog["pid_alive"] is True, live
    assert in_compute(cluster, "vm1", f"stat -c %u /proc/{watchdog['pid']}").strip() == str(runtime)
    wait_for(lambda: guest.agent_status() == "thawed", 20, "the freezer's safety thaw")
    assert time.time() >= deadline - 1.5
    assert_writes_flow(guest, 1)
    assert launcher.safety_thaws == 0, "virt-launcher's timer thawed it, not the freezer's watchdog"
    # Its log, in the pod's private emptyDir, belongs to the runtime user and names the URI that answered.
    log = in_compute(cluster, "vm1", "cd /var/run/kubevirt-private/kubectl-freeze && stat -c %u *.log && cat *.log")
    owner, record = log.splitlines()[0], json.loads(log.splitlines()[-1])
    assert owner == str(runtime)
    assert record["event"] == "safety-thaw" and record["ok"] is True
    # Non-root: only the session URI answers; root: either (the plugin takes what answers).
    assert record["uri"] in ((SESSION_URI,) if runtime else (SESSION_URI, SYSTEM_URI)), record
