"""A simulated KubeVirt cluster: the API server, virt-launcher pods with sandboxed `compute`
containers, virt-launcher freeze handling and the agent poller, backed by the rig's real guests.

Which VMIs are real: every VMI added with a `guest` is backed by a real QEMU guest with a real
qemu-guest-agent (libvirt domain `<namespace>_<name>`). A VMI added without one (for
preflight scenarios: stopped, paused-by-status, migrating, Windows) has objects only; any
attempt to freeze it through libvirt fails as it would for a missing domain.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..store import Store
from . import objects
from .backend import KubeVirtBackend
from .launcher import DEFAULT_RELEASE, Launcher, Release
from .launcher_socket import LauncherSocket
from .poller import AgentPoller
from .sandbox import PodSandbox, kill_instance_processes

NODE = "node01"
OTHER_NODE = "node02"


@dataclass
class SimVMI:
    namespace: str
    name: str
    guest: object | None
    launcher: Launcher
    pods: list[str] = field(default_factory=list)
    sockets: list[LauncherSocket] = field(default_factory=list)
    migrating: bool = False
    release: str = DEFAULT_RELEASE      # its launcher's KubeVirt release; reset() goes back to it


class SimCluster:
    def __init__(self, rig, poll_interval: float = 5.0, bookmark_interval: float = 5.0,
                 workdir: Path | None = None):
        from ..apiserver import ApiServer

        self.rig = rig
        self.instance = secrets.token_hex(4)
        self.owns_workdir = workdir is None
        # Short: unix socket paths below it must fit in 108 bytes.
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kf-sim-"))
        self.backend = KubeVirtBackend()
        self.server = ApiServer(self.backend, bookmark_interval=bookmark_interval)
        self.store: Store = self.server.store
        self.poller = AgentPoller(self.store, interval=poll_interval)
        self.vmis: dict[tuple[str, str], SimVMI] = {}

    # ----- lifecycle -----------------------------------------------------------------------
    def start(self) -> "SimCluster":
        self.server.start()
        self.poller.start()
        return self

    def stop(self) -> None:
        self.poller.stop()
        for vmi in self.vmis.values():
            for sock in vmi.sockets:
                sock.close()
            vmi.launcher.close()
        kill_instance_processes(self.instance)
        self.server.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def reset(self) -> None:
        """Between tests: no pending safety timers, no process a pod left running, status
        updates flowing."""
        for vmi in self.vmis.values():
            vmi.launcher.close()
            vmi.launcher.release = vmi.release
        kill_instance_processes(self.instance)
        self.poller.resume()

    def __enter__(self) -> "SimCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- objects -------------------------------------------------------------------------
    def add_vmi(self, namespace: str, name: str, guest=None, image: str = "python",
                windows: bool = False, with_vm: bool = True, labels: dict | None = None,
                agent_connected: bool | None = None, release: str = DEFAULT_RELEASE) -> dict:
        """A running VMI, its VM (optional) and its virt-launcher pod. `image` is "python" (the
        bundled freezer can run) or "stock" (no python3, like KubeVirt's own image). `release`:
        the KubeVirt release whose virt-launcher freezes it ("1.5", "1.6", ... "main")."""
        Release.parse(release)
        vm_uid = ""
        if with_vm:
            vm_uid = self.store.create(objects.virtual_machine(namespace, name))["metadata"]["uid"]
        vmi = self.store.create(objects.vmi(namespace, name, NODE, labels, windows, vm_uid=vm_uid))
        if agent_connected is None:
            # An object-only VMI says what it is told; a real one learns it from the poller.
            agent_connected = guest is None
        if agent_connected:
            self.store.mutate("virtualmachineinstances", namespace, name,
                              lambda o: objects.set_condition(o, "AgentConnected", True))
        launcher = Launcher(uri=self.rig.uri, domain=f"{namespace}_{name}", windows=windows,
                            migrating=lambda: self.vmis[(namespace, name)].migrating, release=release)
        sim = SimVMI(namespace, name, guest, launcher, release=release)
        self.vmis[(namespace, name)] = sim
        pod = self._add_pod(sim, vmi, NODE, image)
        self.store.mutate("virtualmachineinstances", namespace, name,
                          lambda o: o["status"]["activePods"].update({pod["metadata"]["uid"]: NODE}))
        if guest is not None:
            self.poller.add(namespace, name, launcher)
        return self.store.get("virtualmachineinstances", namespace, name)

    def _add_pod(self, sim: SimVMI, vmi: dict, node: str, image: str, migration_job: str = "") -> dict:
        image_ref = objects.PYTHON_IMAGE if image == "python" else objects.STOCK_IMAGE
        pod = self.store.create(objects.launcher_pod(vmi, node, image_ref, migration_job))
        name = pod["metadata"]["name"]
        sandbox = PodSandbox(root=self.workdir / "pods" / f"{sim.namespace}.{name}",
                             python_image=image == "python",
                             libvirt_socket_dir=self.rig.socket_dir, instance=self.instance)
        sandbox.prepare()
        self.backend.sandboxes[(sim.namespace, name)] = sandbox
        key = (sim.namespace, sim.name)
        sim.sockets.append(LauncherSocket(
            sandbox.launcher_socket, sim.launcher,
            agent_connected=lambda: objects.has_condition(
                self.store.get("virtualmachineinstances", *key), "AgentConnected")))
        sim.pods.append(name)
        self.backend.launchers[key] = sim.launcher
        return pod

    def remove_vmi(self, namespace: str, name: str) -> None:
        """Undo add_vmi: the VMI, its VM, its pods and their launcher sockets are gone."""
        sim = self.vmis.pop((namespace, name))
        self.poller.remove(namespace, name)
        sim.launcher.close()
        for sock in sim.sockets:
            sock.close()
        for pod in sim.pods:
            self.backend.sandboxes.pop((namespace, pod), None)
            self.store.delete("pods", namespace, pod)
        self.backend.launchers.pop((namespace, name), None)
        for resource in ("virtualmachineinstances", "virtualmachines"):
            if self.store.find(resource, namespace, name):
                self.store.delete(resource, namespace, name)

    def add_stopped_vm(self, namespace: str, name: str) -> dict:
        return self.store.create(objects.virtual_machine(namespace, name, running=False))

    def vmi(self, namespace: str, name: str) -> dict:
        return self.store.get("virtualmachineinstances", namespace, name)

    def pod_names(self, namespace: str, name: str) -> list[str]:
        return list(self.vmis[(namespace, name)].pods)

    # ----- scenarios -----------------------------------------------------------------------
    def set_paused(self, namespace: str, name: str, paused: bool) -> None:
        """virtctl pause/unpause: the real domain is suspended; the VMI gets the Paused condition."""
        sim = self.vmis[(namespace, name)]
        if sim.guest is not None:
            dom = sim.guest.dom()
            dom.suspend() if paused else dom.resume()
        self.store.mutate("virtualmachineinstances", namespace, name,
                          lambda o: objects.set_condition(o, "Paused", paused, "PausedByUser"))
        if self.store.find("virtualmachines", namespace, name):
            self.store.mutate("virtualmachines", namespace, name, lambda o: o["status"].update(
                printableStatus="Paused" if paused else "Running"))

    def start_migration(self, namespace: str, name: str) -> dict:
        """A live migration that has started and is not done: a target pod on another node."""
        sim = self.vmis[(namespace, name)]
        sim.migrating = True
        vmi = self.vmi(namespace, name)
        job = str(uuid.uuid4())
        target = self._add_pod(sim, vmi, OTHER_NODE, "python", migration_job=job)

        def update(o: dict) -> None:
            o["status"]["activePods"][target["metadata"]["uid"]] = OTHER_NODE
            o["status"]["migrationState"] = {
                "sourcePod": sim.pods[0], "targetPod": target["metadata"]["name"],
                "sourceNode": NODE, "targetNode": OTHER_NODE, "migrationUid": job,
                "startTimestamp": objects.now(), "completed": False, "failed": False}
        self.store.mutate("virtualmachineinstances", namespace, name, update)
        return target

    def set_release(self, namespace: str, name: str, release: str) -> None:
        """Switch the VMI's virt-launcher to another KubeVirt release's freeze behaviour, until
        reset() (between tests) puts back the one it was added with."""
        Release.parse(release)
        self.vmis[(namespace, name)].launcher.release = release

    def hold_status_updates(self, held: bool = True) -> None:
        """A stuck virt-handler: while held, the VMIs' fsFreezeStatus and AgentConnected stay
        as they are, whatever the guests do (reset() releases it)."""
        self.poller.pause() if held else self.poller.resume()

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        self.store.mutate("virtualmachineinstances", namespace, name,
                          lambda o: o["status"].update(phase=phase))
