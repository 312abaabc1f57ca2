"""Builders for KubeVirt-shaped objects to put in the store (VMIs, VMs, launcher pods)."""

from __future__ import annotations

import secrets
from typing import Optional

from .store import now_timestamp


def vmi(namespace: str, name: str, *, phase: str = "Running", node: str = "node01",
        ip: str = "10.244.0.10", agent: bool = True, labels: Optional[dict] = None,
        os_name: str = "Fedora Linux", os_id: str = "fedora") -> dict:
    conditions = [{"type": "Ready", "status": "True" if phase == "Running" else "False"},
                  {"type": "LiveMigratable", "status": "True"}]
    if agent:
        conditions.append({"type": "AgentConnected", "status": "True"})
    status: dict = {"phase": phase, "nodeName": node, "conditions": conditions,
                    "interfaces": [{"name": "default", "ipAddress": ip}], "runtimeUser": 107}
    if agent:
        status["guestOSInfo"] = {"name": os_name, "id": os_id, "version": "40", "kernelRelease": "6.8.5"}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"namespace": namespace, "name": name, "labels": dict(labels or {})},
            "spec": {"domain": {"devices": {}}}, "status": status}


def vm(namespace: str, name: str, *, running: bool = True) -> dict:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"runStrategy": "Always" if running else "Halted"},
            "status": {"printableStatus": "Running" if running else "Stopped",
                       "ready": running,
                       "conditions": [{"type": "Ready", "status": str(running)}]}}


def launcher_pod(owner: dict, *, node: Optional[str] = None, phase: str = "Running",
                 containers: tuple[str, ...] = ("compute", "guest-console-log")) -> dict:
    """The virt-launcher pod of a stored VMI `owner` (labels, annotations, ownerReference)."""
    meta = owner["metadata"]
    node = node or (owner.get("status") or {}).get("nodeName", "node01")
    suffix = secrets.token_hex(3)[:5]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "namespace": meta["namespace"], "name": f"virt-launcher-{meta['name']}-{suffix}",
                "labels": {**(meta.get("labels") or {}), "kubevirt.io": "virt-launcher",
                           "kubevirt.io/created-by": meta.get("uid", ""),
                           "vm.kubevirt.io/name": meta["name"].split(".")[0]},
                "annotations": {"kubevirt.io/domain": meta["name"],
                                "kubectl.kubernetes.io/default-container": "compute"},
                "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                     "name": meta["name"], "uid": meta.get("uid", ""),
                                     "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"nodeName": node, "containers": [{"name": c, "image": f"sim/{c}"} for c in containers]},
            "status": {"phase": phase, "podIP": "10.244.0.20",
                       "containerStatuses": [_container_status(c, phase) for c in containers]}}


def _container_status(name: str, phase: str) -> dict:
    """All the fields the Python client's V1ContainerStatus insists on."""
    running = phase == "Running"
    state = {"running": {"startedAt": now_timestamp()}} if running else \
        {"waiting": {"reason": "ContainerCreating"}}
    return {"name": name, "image": f"sim/{name}", "imageID": f"sim/{name}@sha256:{'0' * 64}",
            "ready": running, "started": running, "restartCount": 0, "state": state}
