"""The virt-launcher pod as KubeVirt >= 1.6 renders it (issue 9 item 10, facts sheet "Objects
and names"), and the plugin against it on real guests: `guest-console-log` is a native sidecar
in spec.initContainers (restartPolicy Always), a `volumecontainerdisk` container sits beside
`compute`, the readiness gate kubevirt.io/virtual-machine-unpaused, the non-root
securityContext. The plugin must exec into `compute` wherever it is in the list (the simulator
runs nothing else) and use KubeVirt's current pod, not a hotplug volume pod beside it.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.cluster.kubevirt.objects import UNPAUSED_GATE
from tests.test_e2e_plugin import as_json, assert_writes_flow, item, ok, writes_stopped

pytestmark = pytest.mark.cluster

NS = "e2e"


def pod_json(cluster, vm: str) -> dict:
    name = cluster.sim.pod_names(NS, vm)[-1]
    return json.loads(ok(cluster.kubectl("get", "pod", name, "-o", "json")).stdout)


def test_the_launcher_pod_has_kubevirts_shape(cluster):
    pod = pod_json(cluster, "vm1")
    spec = pod["spec"]
    init = {c["name"]: c for c in spec["initContainers"]}
    assert init["guest-console-log"]["restartPolicy"] == "Always"
    assert "restartPolicy" not in init["container-disk-binary"]
    assert [c["name"] for c in spec["containers"]] == ["compute", "volumecontainerdisk"]
    assert spec["readinessGates"] == [{"conditionType": UNPAUSED_GATE}]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["fsGroup"] == 107
    assert {"type": UNPAUSED_GATE, "status": "True"}.items() <= \
        [c for c in pod["status"]["conditions"] if c["type"] == UNPAUSED_GATE][0].items()
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "compute"
    # Only compute runs libvirt, virsh and virt-freezer: exec into another container gets nothing.
    out = cluster.kubectl("exec", pod["metadata"]["name"], "-c", "volumecontainerdisk", "--", "virsh", "list")
    assert out.returncode != 0


@pytest.fixture
def compute_listed_last(cluster):
    """vm1's and vm2's pods with compute after volumecontainerdisk (containers and statuses)."""
    saved = {}
    for vm in ("vm1", "vm2"):
        name = cluster.sim.pod_names(NS, vm)[-1]
        saved[name] = copy.deepcopy(cluster.sim.store.get("pods", NS, name))

        def reorder(pod: dict) -> None:
            pod["spec"]["containers"].reverse()
            pod["status"]["containerStatuses"].reverse()
        cluster.sim.store.mutate("pods", NS, name, reorder)
    try:
        yield
    finally:
        for name, pod in saved.items():
            cluster.sim.store.mutate("pods", NS, name, lambda o, pod=pod: o.update(spec=pod["spec"],
                                                                                   status=pod["status"]))


@pytest.mark.parametrize("vm,method", [("vm1", "freezer"), ("vm2", "virt-freezer")])
def test_freeze_uses_compute_when_it_is_not_the_first_container(cluster, compute_listed_last, vm, method):
    assert pod_json(cluster, vm)["spec"]["containers"][0]["name"] == "volumecontainerdisk"
    guest = cluster.guests[vm]
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", vm, "-o", "json"))), vm)
    assert frozen["result"] == "frozen" and frozen["method"] == method, frozen
    assert guest.agent_status() == "frozen" and writes_stopped(guest, 1, seconds=0.8)
    live = item(as_json(ok(cluster.kubectl("freeze", "status", vm, "--live", "-o", "json"))), vm)
    assert live["live"]["status"] == "frozen", live
    thawed = item(as_json(ok(cluster.kubectl("unfreeze", "vm", vm, "-o", "json"))), vm)
    assert thawed["result"] == "thawed" and thawed["method"] == method
    assert_writes_flow(guest, 1)


def test_a_hotplug_volume_pod_beside_the_launcher_is_not_the_target(cluster):
    launcher = cluster.sim.store.get("pods", NS, cluster.sim.pod_names(NS, "vm1")[-1])
    # Newer, on the same node, controlled by the launcher pod (not by the VMI).
    hp = cluster.sim.store.create({
        "kind": "Pod",
        "metadata": {"name": "hp-volume-abcde", "namespace": NS, "labels": {"kubevirt.io": "hotplug-disk"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": launcher["metadata"]["name"],
                                          "uid": launcher["metadata"]["uid"], "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"nodeName": launcher["spec"]["nodeName"],
                 "containers": [{"name": "hotplug-disk", "image": "quay.io/kubevirt/virt-launcher:v1.6.0"}]},
        "status": {"phase": "Running"}})
    try:
        frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "-o", "json"))), "vm1")
        assert frozen["result"] == "frozen" and frozen["pod"] == launcher["metadata"]["name"]
        assert cluster.guests["vm1"].agent_status() == "frozen"
        ok(cluster.kubectl("unfreeze", "vm", "vm1"))
    finally:
        cluster.sim.store.delete("pods", NS, hp["metadata"]["name"])
