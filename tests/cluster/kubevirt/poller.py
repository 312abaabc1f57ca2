"""virt-launcher's agent poller + virt-handler's status update, for every real-backed VMI.

Every interval (KubeVirt's --qemu-fsfreeze-status-interval, 5 s by default) it asks the real
guest agent guest-fsfreeze-status and writes `status.fsFreezeStatus: frozen` on the VMI, or
removes the field when thawed. A failed poll keeps the previous value, as KubeVirt does. The
AgentConnected condition follows the agent channel: present while connected, removed (not set
False) when the agent is not connected or not configured.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .launcher import Launcher, LauncherError
from .objects import set_condition

VIR_ERR_ARGUMENT_UNSUPPORTED = 74     # "QEMU guest agent is not configured"
VIR_ERR_AGENT_UNRESPONSIVE = 86


@dataclass
class AgentPoller:
    store: object
    interval: float = 5.0
    _targets: dict[tuple[str, str], Launcher] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _poll_lock: threading.Lock = field(default_factory=threading.Lock)   # held for a whole poll
    _paused: bool = False

    def add(self, namespace: str, name: str, launcher: Launcher) -> None:
        with self._lock:
            self._targets[(namespace, name)] = launcher
        self.poke()

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._targets.pop((namespace, name), None)

    def pause(self) -> None:
        """Stop writing to the VMIs (like a stuck virt-handler); returns once no poll is running."""
        with self._poll_lock:
            self._paused = True

    def resume(self) -> None:
        with self._poll_lock:
            self._paused = False
        self.poke()

    def poke(self) -> None:
        """Poll now rather than at the next interval."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agent-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._wake.wait(self.interval)
            self._wake.clear()

    def poll_once(self) -> None:
        with self._poll_lock:
            if self._paused:
                return
            with self._lock:
                targets = list(self._targets.items())
            for (namespace, name), launcher in targets:
                if self._stop.is_set():
                    return
                self._poll(namespace, name, launcher)

    def _poll(self, namespace: str, name: str, launcher: Launcher) -> None:
        connected: bool | None
        try:
            status: str | None = launcher.fsfreeze_status()
            connected = True
        except LauncherError as e:
            status = None
            gone = e.libvirt_code == VIR_ERR_ARGUMENT_UNSUPPORTED or (
                e.libvirt_code == VIR_ERR_AGENT_UNRESPONSIVE and "not connected" in str(e))
            connected = False if gone else None   # None: unknown, keep what is there

        def update(vmi: dict) -> None:
            if status == "frozen":
                vmi["status"]["fsFreezeStatus"] = "frozen"
            elif status == "thawed":
                vmi["status"].pop("fsFreezeStatus", None)
            if connected is not None:
                set_condition(vmi, "AgentConnected", connected)

        try:
            self.store.mutate("virtualmachineinstances", namespace, name, update)
        except Exception:  # noqa: BLE001 - the VMI was deleted meanwhile
            pass
