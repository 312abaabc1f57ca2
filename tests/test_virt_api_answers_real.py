"""Issue 9 item 2: virt-api answers as KubeVirt's does (pkg/virt-api/rest/lifecycle.go,
subresource.go; the wrapped text is the one KubeVirt's tests/vmi_lifecycle_test.go asserts), and the
api method reads those answers: the launcher's error with the bundled freezer's hints, and a freeze
that outlived virt-api's 10 s to virt-handler watched to its end, on real guests.

A slow freeze is a real one: the guest's qemu-ga runs an fsfreeze hook that sleeps first
(`Guest.freeze_delay`), so libvirt, the launcher stand-in and virt-api's timeout all see a guest
agent that takes that long to freeze.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.test_e2e_plugin import NS, as_json, error_line, item, ok
from tests.test_simulator import api_client, wait_for

pytestmark = pytest.mark.cluster

NOT_CONNECTED = ('Internal error occurred: unexpected return code 400 (400 Bad Request), message: server error. '
                 'command Freeze failed: "LibvirtError(Code=86, Domain=10, Message=\'Guest agent is not responding: '
                 'QEMU guest agent is not connected\')"')


def put(cluster, name: str, sub: str, body: dict | None, namespace: str = NS):
    """(HTTP status, raw body) of a subresource PUT with the official client."""
    from kubernetes import client

    path = f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/{sub}"
    try:
        resp = api_client(cluster).call_api(path, "PUT", body=body, auth_settings=["BearerToken"],
                                            header_params={"Content-Type": "application/json"},
                                            _preload_content=False, _return_http_data_only=True,
                                            _request_timeout=60)
        return resp.status, resp.data
    except client.ApiException as e:
        return e.status, e.body


def agent_disconnected(cluster, name: str) -> None:
    """The guest's qemu-ga is gone, while the VMI (a held virt-handler) still shows AgentConnected."""
    import libvirt

    guest = cluster.guests[name]
    cluster.sim.hold_status_updates()
    guest.agent("kill")

    def gone() -> bool:
        try:
            guest.agent_status()
        except libvirt.libvirtError as e:
            return "not connected" in str(e)
        return False
    wait_for(gone, 15, "libvirt to see the agent disconnected")


def test_virt_api_answers_200_empty_409_by_phase_and_500_with_the_launchers_error(cluster):
    guest = cluster.guests["vm1"]
    assert put(cluster, "vm1", "freeze", {"unfreezeTimeout": "5m0s"}) == (200, b"")
    assert guest.agent_status() == "frozen"
    assert put(cluster, "vm1", "unfreeze", None) == (200, b"")
    assert guest.agent_status() == "thawed"

    ns = cluster.fresh_namespace()
    cluster.sim.add_vmi(ns, "done")
    cluster.sim.set_phase(ns, "done", "Succeeded")
    for sub, why in (("freeze", "VM is not running"), ("unfreeze", "VMI is not running")):
        status, body = put(cluster, "done", sub, {"unfreezeTimeout": "1m"} if sub == "freeze" else None, ns)
        assert status == 409
        assert json.loads(body)["message"] == \
            f'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "done": {why}'

    agent_disconnected(cluster, "vm1")
    status, body = put(cluster, "vm1", "freeze", {"unfreezeTimeout": "5m0s"})
    answer = json.loads(body)
    assert (status, answer["reason"], answer["message"]) == (500, "InternalError", NOT_CONNECTED)


def test_a_freeze_slower_than_virt_apis_10s_gets_500_and_still_happens(cluster):
    guest = cluster.guests["vm1"]
    guest.freeze_delay(13)
    try:
        started = time.monotonic()
        status, body = put(cluster, "vm1", "freeze", {"unfreezeTimeout": "5m0s"})
        took = time.monotonic() - started
        message = json.loads(body)["message"]
        assert status == 500 and 9.5 < took < 12, (status, took)
        assert message.startswith('Internal error occurred: Put "https://') and message.endswith(
            '/virtualmachineinstances/vm1/freeze": context deadline exceeded '
            '(Client.Timeout exceeded while awaiting headers)'), message
        # virt-api gave up, the launcher did not: the guest freezes a few seconds later.
        wait_for(lambda: guest.agent_status() == "frozen", 10, "the launcher to finish the freeze")
    finally:
        guest.freeze_delay(0)


def test_api_method_reports_a_freeze_that_outlived_virt_apis_timeout_once_the_agent_confirms(cluster):
    guest = cluster.guests["vm1"]
    guest.freeze_delay(13)
    try:
        out = ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "-o", "json"))
    finally:
        guest.freeze_delay(0)
    frozen = item(as_json(out), "vm1")
    assert frozen["result"] == "frozen" and guest.agent_status() == "frozen"
    # asked the guest agent (virsh in the pod) after virt-api's 500, and the VMI status followed
    assert frozen["confirmedBy"] == ["agent", "vmi-status"]
    [warning] = [w for w in frozen["warnings"] if "virt-api gave up" in w]
    assert "context deadline exceeded" in warning and "the guest agent showed it frozen" in warning
    assert frozen["safetyThaw"]["armed"] is True and frozen["safetyThaw"]["deadline"]


def test_api_method_without_exec_watches_the_vmi_after_virt_apis_timeout(cluster):
    guest = cluster.guests["vm1"]
    guest.freeze_delay(13)
    try:
        out = ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "--context", "no-exec", "-o", "json"))
    finally:
        guest.freeze_delay(0)
    frozen = item(as_json(out), "vm1")
    assert frozen["result"] == "frozen" and frozen["confirmedBy"] == ["vmi-status"]
    assert any("the VMI status showed it frozen" in w for w in frozen["warnings"]), frozen["warnings"]
    assert guest.agent_status() == "frozen"


def test_api_method_says_a_freeze_still_under_way_may_complete(cluster):
    guest = cluster.guests["vm1"]
    guest.freeze_delay(22)
    try:
        out = cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "--timeout", "14s", timeout=120)
    finally:
        guest.freeze_delay(0)
    assert out.returncode == 1, out.stderr
    line = error_line(out)
    assert "virt-api gave up waiting for the freeze of e2e/vm1 (context deadline exceeded)" in line, line
    assert "the freeze may still complete" in line and "kubectl freeze status --live vm1" in line, line
    # The run rolled back what it may have frozen: the launcher's unfreeze waited for its freeze.
    wait_for(lambda: guest.agent_status() == "thawed", 40, "the late freeze to be thawed by the rollback")


def test_api_method_gives_the_freezers_hint_for_the_launchers_agent_error(cluster):
    agent_disconnected(cluster, "vm1")
    out = cluster.kubectl("freeze", "vm", "vm1", "--method", "api")
    assert out.returncode == 1, out.stderr
    line = error_line(out)
    assert ("KubeVirt's virt-launcher could not freeze e2e/vm1: agent-not-connected: Guest agent is not "
            "responding: QEMU guest agent is not connected (libvirt error 86)") in line, line
    assert "install and start qemu-guest-agent in the guest, then try again" in line, line
