"""virt-launcher's freeze handling for one VMI, done on the real guest through libvirt.

Follows KubeVirt's behaviour (../shared/docs/kubevirt-freeze-facts.md): freeze asks
guest-fsfreeze-status first and succeeds without acting on a frozen guest; unfreeze of a
thawed guest succeeds without acting and still thaws when the status query fails; a freeze
cancels any pending safety timer and starts a new one when the timeout is not 0; unfreeze
cancels it. The timer lives only in this object's memory, as it does in the launcher.
Like KubeVirt's FreezeVMI, it does not touch the VMI status: only the agent poller does, so
`status.fsFreezeStatus` follows within a poll interval whichever way the guest was frozen.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

# virt-launcher's status query is a QemuAgentCommand with libvirt's default: 5 s.
QUERY_AGENT_TIMEOUT_S = 5
LIBVIRT_DEFAULT_AGENT_TIMEOUT = -1     # VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT: 5 s
DEFAULT_RELEASE = "1.8"


@dataclass(frozen=True)
class Release:
    """How a KubeVirt release's virt-launcher freezes, and how long its callers (virt-handler,
    virt-freezer: the cmd-client's gRPC deadline) wait before they give up while the launcher
    goes on (facts sheet, "Timeouts by release")."""

    name: str
    agent_commands: bool        # up to 1.5: guest-fsfreeze-freeze/-thaw as QemuAgentCommand (5 s)
    freeze_deadline_s: float    # 20 s up to 1.7; 60 s from 1.8 (Windows VSS can be slow)
    unfreeze_deadline_s: float = 20.0

    @classmethod
    def parse(cls, name: str) -> "Release":
        """'1.3' ... '1.9', or 'main' (newest)."""
        minor = 99 if name == "main" else int(name.split(".")[1])
        if name != "main" and (not name.startswith("1.") or minor < 3):
            raise ValueError(f"unknown KubeVirt release {name!r}")
        return cls(name, agent_commands=minor <= 5, freeze_deadline_s=60.0 if minor >= 8 else 20.0)
# Windows' VSS holds a freeze for only about 10 s.
VSS_LIMIT_S = 10.0
# What libvirt passes on from qemu-ga for Windows (qga/vss-win32/requester.cpp) when a thaw comes
# after VSS let go of the writes; KubeVirt wraps it and treats it as a failed quiesce.
VSS_THAW_ERROR = ("internal error: unable to execute QEMU agent command 'guest-fsfreeze-thaw': "
                  "couldn't hold writes: fsfreeze is limited up to 10 seconds")
VIR_ERR_INTERNAL_ERROR = 1


class LauncherError(Exception):
    """A failure virt-launcher reports back (virt-api answers it as 500: cmdclient.py)."""

    def __init__(self, message: str, libvirt_code: int = 0):
        super().__init__(message)
        self.libvirt_code = libvirt_code


@dataclass
class Launcher:
    uri: str
    domain: str
    # Emulate a Windows guest's VSS: after 10 s the writes would go on, but qemu-ga for Windows
    # keeps answering "frozen" (from its own state) until a thaw, which then fails with
    # VSS_THAW_ERROR after thawing. The real (Linux) guest stays frozen meanwhile, so the agent's
    # answers and the VMI status are as on Windows; only the guest's own writes differ.
    windows: bool = False
    migrating: Callable[[], bool] = lambda: False
    release: str = DEFAULT_RELEASE     # which KubeVirt's virt-launcher this is (Release.parse)
    _timer: Optional[threading.Timer] = field(default=None, repr=False)
    _vss_timer: Optional[threading.Timer] = field(default=None, repr=False)
    _vss_expired: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    safety_thaws: int = 0              # how often the safety timer fired (for tests)

    def _dom(self):
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            conn = libvirt.open(self.uri)
            return conn, conn.lookupByName(self.domain)
        except libvirt.libvirtError as e:
            raise LauncherError(str(e), e.get_error_code()) from e

    def _agent(self, command: str, timeout: int) -> object:
        import libvirt
        import libvirt_qemu

        conn, dom = self._dom()
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": command}), timeout, 0)
            return json.loads(reply).get("return")
        except libvirt.libvirtError as e:
            raise LauncherError(str(e), e.get_error_code()) from e
        finally:
            conn.close()

    def fsfreeze_status(self) -> str:
        return str(self._agent("guest-fsfreeze-status", QUERY_AGENT_TIMEOUT_S))

    def is_running(self) -> bool:
        return self._state() == "running"

    def _state(self) -> str | None:
        """"running", "paused", "other", or None when the domain cannot be found."""
        import libvirt

        try:
            conn, dom = self._dom()
        except LauncherError:
            return None
        try:
            state = dom.state()[0]
        finally:
            conn.close()
        return {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused"}.get(state, "other")

    def _within(self, deadline_s: float, work: Callable[[], None]) -> None:
        """The caller's gRPC deadline: past it the caller gets an error while the launcher's own
        call goes on (and, for a freeze that completes, still arms its timer)."""
        failure: list[LauncherError] = []
        done = threading.Event()

        def run() -> None:
            try:
                work()
            except LauncherError as e:
                failure.append(e)
            finally:
                done.set()

        threading.Thread(target=run, name=f"launcher {self.domain}", daemon=True).start()
        if not done.wait(deadline_s):
            raise LauncherError("rpc error: code = DeadlineExceeded desc = context deadline exceeded")
        if failure:
            raise failure[0]

    def _fs(self, action: str) -> None:
        """Freeze or thaw every filesystem as this release does: up to 1.5 an agent command with
        libvirt's 5 s; from 1.6 FSFreeze/FSThaw, which wait by the domain's agent timeout."""
        import libvirt

        if Release.parse(self.release).agent_commands:
            self._agent(f"guest-fsfreeze-{action}", LIBVIRT_DEFAULT_AGENT_TIMEOUT)
            return
        conn, dom = self._dom()
        try:
            dom.fsFreeze(None, 0) if action == "freeze" else dom.fsThaw(None, 0)
        except libvirt.libvirtError as e:
            raise LauncherError(str(e), e.get_error_code()) from e
        finally:
            conn.close()

    def freeze(self, unfreeze_timeout_s: float) -> None:
        self._within(Release.parse(self.release).freeze_deadline_s, lambda: self._freeze(unfreeze_timeout_s))

    def _freeze(self, unfreeze_timeout_s: float) -> None:
        with self._lock:
            if self.migrating():
                raise LauncherError("VMI is currently during migration")
            if self._state() == "paused":
                # KubeVirt 1.6+ (PR #15001, backported to 1.5) counts a freeze of a paused VMI a
                # success: nothing is frozen or flushed, and no safety timer is armed.
                return
            if self.fsfreeze_status() == "frozen":
                return
            self._fs("freeze")
            self._vss_expired = False
            self._cancel_timers()
            # KubeVirt arms any timeout but 0: a negative one (virt-handler's int32 overflow) fires at once.
            if unfreeze_timeout_s != 0:
                self._timer = self._start_timer(unfreeze_timeout_s, self._safety_unfreeze)
            if self.windows:
                self._vss_timer = self._start_timer(VSS_LIMIT_S, self._vss_release)

    def unfreeze(self) -> None:
        self._within(Release.parse(self.release).unfreeze_deadline_s, self._unfreeze)

    def _unfreeze(self) -> None:
        with self._lock:
            self._cancel_timers()
            if self._vss_expired:
                self._vss_expired = False
                # qemu-ga for Windows ends its frozen state even though the thaw fails.
                self._agent("guest-fsfreeze-thaw", QUERY_AGENT_TIMEOUT_S)
                raise LauncherError(VSS_THAW_ERROR, VIR_ERR_INTERNAL_ERROR)
            try:
                if self.fsfreeze_status() == "thawed":
                    return
            except LauncherError:
                pass  # KubeVirt thaws anyway when it cannot read the status
            self._fs("thaw")

    @property
    def timer_armed(self) -> bool:
        """Whether the safety timer is pending (for tests)."""
        with self._lock:
            return self._timer is not None

    def _start_timer(self, seconds: float, action: Callable[[], None]) -> threading.Timer:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        return timer

    def _cancel_timers(self) -> None:
        for timer in (self._timer, self._vss_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._vss_timer = None

    def _safety_unfreeze(self) -> None:
        with self._lock:
            self._timer = None
            self.safety_thaws += 1
            self._vss_expired = False    # the agent leaves its frozen state whatever the thaw answers
            try:
                self._fs("thaw")   # KubeVirt's timer calls UnfreezeVMI
            except LauncherError:
                return

    def _vss_release(self) -> None:
        # VSS let go of the writes; the agent still says frozen until a thaw comes.
        with self._lock:
            self._vss_timer = None
            self._vss_expired = True

    def close(self) -> None:
        with self._lock:
            self._cancel_timers()
