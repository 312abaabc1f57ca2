"""The simulator's real backend: exec runs in the pod's sandbox on the host, and the
freeze/unfreeze subresources go to the VMI's virt-launcher, which acts on the real guest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .. import errors
from ..backend import ExecIO, vmi_conflict
from .launcher import Launcher, LauncherError
from .objects import has_condition
from .sandbox import PodSandbox


@dataclass
class KubeVirtBackend:
    sandboxes: dict[tuple[str, str], PodSandbox] = field(default_factory=dict)     # (ns, pod)
    launchers: dict[tuple[str, str], Launcher] = field(default_factory=dict)       # (ns, vmi)

    async def exec(self, pod: dict, container: str, command: list[str], io: ExecIO) -> int:
        meta = pod["metadata"]
        sandbox = self.sandboxes.get((meta["namespace"], meta["name"]))
        if sandbox is None:
            raise errors.ApiError(500, "InternalError", f"container {container} is not running")
        if container != "compute":
            # Only the compute container is modelled; the others have no libvirt, virsh or
            # virt-freezer, so a plugin that picked one would fail there too.
            raise errors.ApiError(500, "InternalError",
                                  f"the simulator runs only the compute container, not {container}")
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
        if (vmi.get("status") or {}).get("phase") != "Running":
            raise vmi_conflict(vmi, "VMI is not running")
        launcher = self.launchers.get((meta["namespace"], meta["name"]))
        if launcher is None:
            raise errors.ApiError(400, "BadRequest", "Internal error occurred: unable to reach virt-launcher")
        return launcher

    async def freeze(self, vmi: dict, unfreeze_timeout_s: float) -> None:
        launcher = self._launcher(vmi)
        try:
            await asyncio.to_thread(launcher.freeze, unfreeze_timeout_s)
        except LauncherError as e:
            raise errors.ApiError(400, "BadRequest", f"Internal error occurred: {e}") from e

    async def unfreeze(self, vmi: dict) -> None:
        launcher = self._launcher(vmi)
        try:
            await asyncio.to_thread(launcher.unfreeze)
        except LauncherError as e:
            raise errors.ApiError(400, "BadRequest", f"Internal error occurred: {e}") from e

    async def guestosinfo(self, vmi: dict) -> dict:
        if not has_condition(vmi, "AgentConnected"):
            raise vmi_conflict(vmi, "VMI does not have guest agent connected")
        return vmi["status"].get("guestOSInfo") or {}
