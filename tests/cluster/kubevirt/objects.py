"""KubeVirt's objects as the simulator stores them: VirtualMachine, VirtualMachineInstance
and the virt-launcher pod, with the labels, annotations and owner references KubeVirt puts on
them (pkg/virt-controller/services/template.go, rendercontainer.go, rendervolumes.go).

Non-root launchers are KubeVirt's default (`status.runtimeUser: 107`); runtime_user=0 gives a
root launcher (the `Root` feature gate)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

STOCK_IMAGE = "quay.io/kubevirt/virt-launcher:v1.6.0"
# A launcher image with python3 + libvirt-python, where the bundled freezer can run.
PYTHON_IMAGE = "localhost/virt-launcher-python:v1.6.0"
CONTAINER_DISK_IMAGE = "quay.io/kubevirt/cirros-container-disk-demo:v1.6.0"
NONROOT_UID = 107
UNPAUSED_GATE = "kubevirt.io/virtual-machine-unpaused"

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
        windows: bool = False, runtime_user: int = NONROOT_UID, vm_uid: str = "") -> dict:
    obj: dict = {
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app": name, "kubevirt.io/domain": name, "kubevirt.io/nodeName": node,
                       **(labels or {})},
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
        },
        "spec": {"domain": {"devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}]},
                            "resources": {"requests": {"memory": "256Mi"}}},
                 "volumes": [{"name": "containerdisk", "containerDisk": {"image": CONTAINER_DISK_IMAGE}}]},
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


def _security(runtime_user: int) -> tuple[dict, dict]:
    """The pod's and the compute container's securityContext as KubeVirt renders them."""
    if runtime_user == 0:
        return {"runAsUser": 0}, {"privileged": False, "runAsUser": 0,
                                  "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_NICE"]}}
    ids = {"runAsUser": runtime_user, "runAsGroup": runtime_user, "runAsNonRoot": True}
    return ({**ids, "fsGroup": runtime_user},
            {**ids, "privileged": False, "allowPrivilegeEscalation": False,
             "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}})


def _compute_env(runtime_user: int) -> list[dict]:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    if runtime_user != 0:
        env += [{"name": "XDG_CACHE_HOME", "value": "/var/run/kubevirt-private"},
                {"name": "XDG_CONFIG_HOME", "value": "/var/run/kubevirt-private"},
                {"name": "XDG_RUNTIME_DIR", "value": "/var/run"}]
    return env


COMPUTE_MOUNTS = [
    {"name": "private", "mountPath": "/var/run/kubevirt-private"},
    {"name": "public", "mountPath": "/var/run/kubevirt"},
    {"name": "ephemeral-disks", "mountPath": "/var/run/kubevirt-ephemeral-disks"},
    {"name": "container-disks", "mountPath": "/var/run/kubevirt/container-disks", "mountPropagation": "HostToContainer"},
    {"name": "libvirt-runtime", "mountPath": "/var/run/libvirt"},
    {"name": "sockets", "mountPath": "/var/run/kubevirt/sockets"},
    {"name": "hotplug-disks", "mountPath": "/var/run/kubevirt/hotplug-disks", "mountPropagation": "HostToContainer"},
]
EMPTY_DIR_VOLUMES = ("private", "public", "sockets", "virt-bin-share-dir", "libvirt-runtime",
                     "ephemeral-disks", "container-disks", "hotplug-disks")


def launcher_pod(vmi_obj: dict, node: str, image: str, migration_job: str = "") -> dict:
    """The pod as KubeVirt >= 1.6 renders it: `compute` (QEMU, libvirt), a `volumecontainerdisk`
    container, the init container that copies KubeVirt's container-disk binary, and
    `guest-console-log` as a native sidecar (an init container with restartPolicy Always); the
    readiness gate virt-handler sets while the VM is not paused; the securityContext of the
    VMI's runtimeUser."""
    meta = vmi_obj["metadata"]
    name = meta["name"]
    runtime_user = int((vmi_obj.get("status") or {}).get("runtimeUser") or 0)
    pod_security, compute_security = _security(runtime_user)
    labels = {**meta.get("labels", {}), "kubevirt.io": "virt-launcher",
              "kubevirt.io/created-by": meta["uid"], "vm.kubevirt.io/name": name.split(".")[0]}
    if migration_job:
        labels["kubevirt.io/migrationJobUID"] = migration_job
    sidecar_security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": runtime_user != 0, "runAsUser": runtime_user}
    started = now()
    running = {"running": {"startedAt": started}}
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
            "securityContext": pod_security,
            "readinessGates": [{"conditionType": UNPAUSED_GATE}],
            "automountServiceAccountToken": False,
            "initContainers": [
                {"name": "container-disk-binary", "image": image,
                 "command": ["/usr/bin/cp", "/usr/bin/container-disk", "/init/usr/bin/container-disk"],
                 "securityContext": sidecar_security,
                 "volumeMounts": [{"name": "virt-bin-share-dir", "mountPath": "/init/usr/bin"}]},
                {"name": "guest-console-log", "image": image, "restartPolicy": "Always",
                 "command": ["/usr/bin/virt-tail"],
                 "args": ["--logfile", f"/var/run/kubevirt-private/{meta['uid']}/virt-serial0-log"],
                 "securityContext": sidecar_security,
                 "volumeMounts": [{"name": "private", "mountPath": "/var/run/kubevirt-private", "readOnly": True}]},
            ],
            "containers": [
                {"name": "compute", "image": image, "command": ["/usr/bin/virt-launcher-monitor"],
                 "env": _compute_env(runtime_user), "securityContext": compute_security,
                 "volumeMounts": COMPUTE_MOUNTS},
                {"name": "volumecontainerdisk", "image": CONTAINER_DISK_IMAGE,
                 "command": ["/var/run/kubevirt/init/usr/bin/container-disk"],
                 "securityContext": sidecar_security,
                 "volumeMounts": [{"name": "container-disks", "mountPath": "/var/run/kubevirt-ephemeral-disks/disk-data/containerdisk"},
                                  {"name": "virt-bin-share-dir", "mountPath": "/var/run/kubevirt/init/usr/bin"}]},
            ],
            "volumes": [{"name": v, "emptyDir": {}} for v in EMPTY_DIR_VOLUMES],
        },
        "status": {
            "phase": "Running", "podIP": "10.244.0.10", "startTime": started,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": started}
                           for t in ("PodReadyToStartContainers", "Initialized", UNPAUSED_GATE,
                                     "Ready", "ContainersReady", "PodScheduled")],
            "initContainerStatuses": [
                {"name": "container-disk-binary", "ready": True, "image": image, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                          "finishedAt": started}}},
                {"name": "guest-console-log", "ready": True, "started": True, "image": image,
                 "restartCount": 0, "state": running},
            ],
            "containerStatuses": [{"name": c, "ready": True, "started": True, "image": i,
                                   "restartCount": 0, "state": running}
                                  for c, i in (("compute", image), ("volumecontainerdisk", CONTAINER_DISK_IMAGE))],
        },
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
