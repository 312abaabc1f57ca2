"""The simulator's real backend: exec runs in the pod's sandbox on the host, and the
freeze/unfreeze subresources go to the VMI's virt-launcher, which acts on the real guest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .. import errors
from ..backend import ExecIO, vmi_conflict
from . import cmdclient
from .launcher import Launcher, LauncherError
from .objects import has_condition
from .sandbox import PodSandbox


VIRT_HANDLER_IP = "10.244.0.2"


def internal_error(message: str) -> errors.ApiError:
    """apimachinery's errors.NewInternalError(err), as virt-api sends it."""
    cause = message.removeprefix("Internal error occurred: ")
    return errors.ApiError(500, "InternalError", message, {"causes": [{"message": cause}]})


@dataclass
class KubeVirtBackend:
    sandboxes: dict[tuple[str, str], PodSandbox] = field(default_factory=dict)     # (ns, pod)
    launchers: dict[tuple[str, str], Launcher] = field(default_factory=dict)       # (ns, vmi)
    handler_timeout_s: float = cmdclient.VIRT_API_HANDLER_TIMEOUT_S

    async def exec(self, pod: dict, container: str, command: list[str], io: ExecIO) -> int:
        meta = pod["metadata"]
        sandbox = self.sandboxes.get((meta["namespace"], meta["name"]))
        if sandbox is None:
            raise errors.ApiError(500, "InternalError", f"container {container} is not running")
        proc = await asyncio.create_subprocess_exec(
            *sandbox.command(command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

        async def feed() -> None:
            try:
                while chunk := await io.read_stdin():
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                proc.stdin.close()

        async def pump(stream: asyncio.StreamReader, write) -> None:
            while chunk := await stream.read(65536):
                await write(chunk)

        feeder = asyncio.create_task(feed())
        try:
            await asyncio.gather(pump(proc.stdout, io.write_stdout), pump(proc.stderr, io.write_stderr))
            return await proc.wait()
        finally:
            feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def _launcher(self, vmi: dict) -> Launcher:
        meta = vmi["metadata"]
        launcher = self.launchers.get((meta["namespace"], meta["name"]))
        if launcher is None:
            # virt-api answers 400 itself only when it cannot reach virt-handler
            raise errors.ApiError(400, "BadRequest", "Internal error occurred: unable to reach virt-launcher")
        return launcher

    async def freeze(self, vmi: dict, unfreeze_timeout_s: float) -> None:
        # The caller (virt-api's route) checked the phase; virt-handler has cut the timeout to int32.
        launcher = self._launcher(vmi)
        await self._through_virt_handler(vmi, "freeze", "Freeze", launcher.freeze, unfreeze_timeout_s)

    async def unfreeze(self, vmi: dict) -> None:
        launcher = self._launcher(vmi)
        await self._through_virt_handler(vmi, "unfreeze", "Unfreeze", launcher.unfreeze)

    async def _through_virt_handler(self, vmi: dict, sub: str, command: str, call, *args) -> None:
        """virt-api -> virt-handler (10 s HTTP client timeout) -> virt-launcher. A failure below
        virt-api comes back as 500 InternalError; on the timeout virt-handler and the launcher go
        on (nothing cancels them), so a slow freeze still happens after virt-api gave up."""
        task = asyncio.ensure_future(asyncio.to_thread(call, *args))
        # Whatever the launcher says after virt-api stopped listening is dropped, as there.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        meta = vmi["metadata"]
        try:
            await asyncio.wait_for(asyncio.shield(task), self.handler_timeout_s)
        except asyncio.TimeoutError:
            raise internal_error(cmdclient.virt_api_timeout(
                VIRT_HANDLER_IP, meta["namespace"], meta["name"], sub)) from None
        except LauncherError as e:
            raise internal_error(cmdclient.virt_api_internal_error(cmdclient.command_failed(command, e))) from e

    async def guestosinfo(self, vmi: dict) -> dict:
        if not has_condition(vmi, "AgentConnected"):
            raise vmi_conflict(vmi, "VMI does not have guest agent connected")
        return vmi["status"].get("guestOSInfo") or {}
