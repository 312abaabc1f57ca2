"""KubeVirt's objects as the simulator stores them: VirtualMachine, VirtualMachineInstance
and the virt-launcher pod, with the labels, annotations and owner references KubeVirt puts on
them (pkg/virt-controller/services/template.go)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

STOCK_IMAGE = "quay.io/kubevirt/virt-launcher:v1.6.0"
# A launcher image with python3 + libvirt-python, where the bundled freezer can run.
PYTHON_IMAGE = "localhost/virt-launcher-python:v1.6.0"

LINUX_OS = {"id": "debian", "name": "Debian GNU/Linux", "prettyName": "Debian GNU/Linux 12 (bookworm)",
            "version": "12", "versionId": "12", "kernelRelease": "6.1.0-56-amd64", "machine": "x86_64"}
WINDOWS_OS = {"id": "mswindows", "name": "Microsoft Windows", "prettyName": "Windows Server 2022 Datacenter",
              "version": "2022", "versionId": "2022", "kernelRelease": "20348", "machine": "x86_64"}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def virtual_machine(namespace: str, name: str, running: bool = True) -> dict:
    return {
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "runStrategy": "Always" if running else "Halted",
            "template": {"metadata": {"labels": {"app": name, "kubevirt.io/domain": name}},
                         "spec": {"domain": {"devices": {}}}},
        },
        "status": {"printableStatus": "Running" if running else "Stopped", "ready": running,
                   "created": running},
    }


def vmi(namespace: str, name: str, node: str = "node01", labels: dict | None = None,
        windows: bool = False, runtime_user: int = 0, vm_uid: str = "") -> dict:
    obj: dict = {
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app": name, "kubevirt.io/domain": name, "kubevirt.io/nodeName": node,
                       **(labels or {})},
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
        },
        "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "256Mi"}}}},
        "status": {
            "phase": "Running",
            "nodeName": node,
            "runtimeUser": runtime_user,
            "activePods": {},
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now()},
                {"type": "LiveMigratable", "status": "True"},
            ],
            "guestOSInfo": dict(WINDOWS_OS if windows else LINUX_OS),
            "interfaces": [{"ipAddress": "10.244.0.10", "name": "default"}],
        },
    }
    if vm_uid:
        obj["metadata"]["ownerReferences"] = [{
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": name,
            "uid": vm_uid, "controller": True, "blockOwnerDeletion": True}]
    return obj


def launcher_pod(vmi_obj: dict, node: str, image: str, migration_job: str = "") -> dict:
    meta = vmi_obj["metadata"]
    name = meta["name"]
    labels = {**meta.get("labels", {}), "kubevirt.io": "virt-launcher",
              "kubevirt.io/created-by": meta["uid"], "vm.kubevirt.io/name": name.split(".")[0]}
    if migration_job:
        labels["kubevirt.io/migrationJobUID"] = migration_job
    return {
        "kind": "Pod",
        "metadata": {
            "name": f"virt-launcher-{name}-{secrets.token_hex(3)[:5]}",
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {
                "kubevirt.io/domain": name,
                "kubectl.kubernetes.io/default-container": "compute",
                "pre.hook.backup.velero.io/container": "compute",
                "pre.hook.backup.velero.io/command":
                    f'["/usr/bin/virt-freezer", "--freeze", "--name", "{name}", "--namespace", "{meta["namespace"]}"]',
                "post.hook.backup.velero.io/container": "compute",
                "post.hook.backup.velero.io/command":
                    f'["/usr/bin/virt-freezer", "--unfreeze", "--name", "{name}", "--namespace", "{meta["namespace"]}"]',
            },
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                 "name": name, "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "compute", "image": image, "command": ["/usr/bin/virt-launcher-monitor"]},
                {"name": "guest-console-log", "image": image},
            ],
        },
        "status": {"phase": "Running", "podIP": "10.244.0.10", "startTime": now(),
                   "containerStatuses": [{"name": c, "ready": True, "image": image, "restartCount": 0,
                                          "state": {"running": {"startedAt": now()}}}
                                         for c in ("compute", "guest-console-log")]},
    }


def set_condition(vmi_obj: dict, ctype: str, present: bool, reason: str = "") -> None:
    """KubeVirt REMOVES AgentConnected when the agent goes away rather than setting False."""
    if has_condition(vmi_obj, ctype) == present:
        return      # unchanged: keep lastTransitionTime, write nothing
    conditions = [c for c in vmi_obj["status"].get("conditions", []) if c["type"] != ctype]
    if present:
        # virt-handler (pkg/virt-handler/vm.go) stamps AgentConnected with lastProbeTime only: its
        # lastTransitionTime is a zero metav1.Time, which serialises as null.
        stamp = ({"lastProbeTime": now(), "lastTransitionTime": None} if ctype == "AgentConnected"
                 else {"lastTransitionTime": now()})
        conditions.append({"type": ctype, "status": "True", **stamp,
                           **({"reason": reason} if reason else {})})
    vmi_obj["status"]["conditions"] = conditions


def has_condition(vmi_obj: dict, ctype: str) -> bool:
    return any(c["type"] == ctype and c.get("status") == "True"
               for c in vmi_obj.get("status", {}).get("conditions", []))
