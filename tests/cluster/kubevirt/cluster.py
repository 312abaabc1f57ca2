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
from .session_virtqemud import SessionVirtqemudSocket

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
            vmi.launcher.safety_thaws = 0     # each test counts the timer's fires of its own
        kill_instance_processes(self.instance)
        self.poller.resume()

    def __enter__(self) -> "SimCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- objects -------------------------------------------------------------------------
    def add_vmi(self, namespace: str, name: str, guest=None, image: str = "python",
                windows: bool = False, with_vm: bool = True, labels: dict | None = None,
                agent_connected: bool | None = None, runtime_user: int = objects.NONROOT_UID,
                release: str = DEFAULT_RELEASE) -> dict:
        """A running VMI, its VM (optional) and its virt-launcher pod. `image` is "python" (the
        bundled freezer can run) or "stock" (no python3, like KubeVirt's own image);
        `runtime_user` 107 is a non-root launcher (KubeVirt's default), 0 a root one. `release`:
        the KubeVirt release whose virt-launcher freezes it ("1.5", "1.6", ... "main")."""
        Release.parse(release)
        vm_uid = ""
        if with_vm:
            vm_uid = self.store.create(objects.virtual_machine(namespace, name))["metadata"]["uid"]
        vmi = self.store.create(objects.vmi(namespace, name, NODE, labels, windows,
                                            runtime_user=runtime_user, vm_uid=vm_uid))
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
                             libvirt_socket_dir=self.rig.socket_dir, instance=self.instance,
                             runtime_user=int(vmi["status"].get("runtimeUser") or 0))
        sandbox.prepare()
        self.backend.sandboxes[(sim.namespace, name)] = sandbox
        key = (sim.namespace, sim.name)
        sim.sockets.append(LauncherSocket(
            sandbox.launcher_socket, sim.launcher,
            agent_connected=lambda: objects.has_condition(
                self.store.get("virtualmachineinstances", *key), "AgentConnected")))
        sandbox.hand_over(sandbox.launcher_socket)   # virt-launcher made it, as the runtime user
        if sandbox.nonroot:
            sim.sockets.append(SessionVirtqemudSocket(sandbox.session_socket, self.rig.socket_dir / "libvirt-sock",
                                                      sandbox.runtime_user))
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

    def set_windows(self, namespace: str, name: str, windows: bool) -> None:
        """The VMI reports a Windows guest (status.guestOSInfo) and its launcher answers as
        qemu-ga for Windows does (VSS: see Launcher.windows)."""
        self.vmis[(namespace, name)].launcher.windows = windows
        self.store.mutate("virtualmachineinstances", namespace, name, lambda o: o["status"].update(
            guestOSInfo=dict(objects.WINDOWS_OS if windows else objects.LINUX_OS)))

    def start_migration(self, namespace: str, name: str) -> dict:
        """A live migration that has started and is not done: a target pod on another node."""
        sim = self.vmis[(namespace, name)]
        sim.migrating = True
        vmi = self.vmi(namespace, name)
        job = str(uuid.uuid4())
        source_node = vmi["status"]["nodeName"]
        target_node = OTHER_NODE if source_node == NODE else NODE
        target = self._add_pod(sim, vmi, target_node, "python", migration_job=job)

        def update(o: dict) -> None:
            o["status"]["activePods"][target["metadata"]["uid"]] = target_node
            o["status"]["migrationState"] = {
                "sourcePod": sim.pods[0], "targetPod": target["metadata"]["name"],
                "sourceNode": source_node, "targetNode": target_node, "migrationUid": job,
                "startTimestamp": objects.now(), "completed": False, "failed": False}
        self.store.mutate("virtualmachineinstances", namespace, name, update)
        return target

    def complete_migration(self, namespace: str, name: str) -> str:
        """The live migration started by start_migration() succeeds: the target pod on the other node
        becomes KubeVirt's current pod, migrationState is completed, and the source pod is gone with
        everything that lived only in it (virt-launcher's safety timer, the processes exec left
        running there, such as the freezer's watchdog). The rig's domain itself stays where it
        is, frozen or not, as a migrated guest arrives as it left. Returns the new pod's name."""
        sim = self.vmis[(namespace, name)]
        vmi = self.vmi(namespace, name)
        state = vmi["status"]["migrationState"]
        source, target = state["sourcePod"], state["targetPod"]
        sim.launcher.close()                 # the source launcher process ends: its timer with it
        sandbox = self.backend.sandboxes.pop((namespace, source), None)
        if sandbox is not None:
            kill_instance_processes(self.instance, sandbox)
        index = sim.pods.index(source)
        sim.sockets.pop(index).close()
        sim.pods.pop(index)
        source_uid = self.store.get("pods", namespace, source)["metadata"]["uid"]
        self.store.delete("pods", namespace, source)       # completed, then removed by KubeVirt
        sim.migrating = False

        def update(o: dict) -> None:
            o["status"]["nodeName"] = state["targetNode"]
            o["metadata"]["labels"]["kubevirt.io/nodeName"] = state["targetNode"]
            o["status"]["activePods"].pop(source_uid, None)
            o["status"]["migrationState"].update(completed=True, endTimestamp=objects.now())
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
