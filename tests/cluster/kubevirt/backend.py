"""The simulator's real backend: exec runs in the pod's sandbox on the host, and the
freeze/unfreeze subresources go to the VMI's virt-launcher, which acts on the real guest."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from dataclasses import dataclass, field

from .. import errors
from ..backend import ExecIO, vmi_conflict
from . import cmdclient
from .launcher import Launcher, LauncherError
from .objects import has_condition
from .sandbox import PodSandbox


async def run_in_container(argv: list[str], io: ExecIO) -> int:
    """Run ``argv`` with the exec session's streams, as containerd/CRI-O do: when the client goes away
    (or the stream is cut) the process's stdin reads EOF and its later writes get EPIPE, but the
    process is NOT killed (kubernetes/kubernetes#89031). Not asyncio's subprocess: closing its
    transport kills the process."""
    loop = asyncio.get_running_loop()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exited: asyncio.Future = loop.create_future()

    def reap() -> None:  # also reaps a process that outlives its session (no zombie)
        code = proc.wait()
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(lambda: exited.done() or exited.set_result(code))

    threading.Thread(target=reap, daemon=True, name=f"reap-{proc.pid}").start()
    transports = []

    async def reader(pipe) -> asyncio.StreamReader:
        stream = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
        transports.append(transport)
        return stream

    async def feed() -> None:
        try:
            while chunk := await io.read_stdin():
                await asyncio.to_thread(_write_all, proc.stdin, chunk)
        except (BrokenPipeError, ConnectionResetError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    async def pump(stream: asyncio.StreamReader, write) -> None:
        while chunk := await stream.read(65536):
            await write(chunk)

    def let_go() -> None:
        # stdin EOF, and the read ends closed so that the process's next write gets EPIPE
        with contextlib.suppress(OSError):
            proc.stdin.close()
        for transport in transports:
            transport.close()

    feeder = asyncio.create_task(feed())
    outputs = None
    try:
        outputs = asyncio.gather(pump(await reader(proc.stdout), io.write_stdout),
                                 pump(await reader(proc.stderr), io.write_stderr))
        gone = getattr(io, "gone", None)
        waiters = [outputs] + ([asyncio.ensure_future(gone.wait())] if gone is not None else [])
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not outputs.done():          # the client left first: the process runs on
            outputs.cancel()
            outputs.add_done_callback(lambda f: f.cancelled() or f.exception())
            let_go()
            return -1
        for waiter in waiters[1:]:
            waiter.cancel()
        return await exited
    finally:
        feeder.cancel()
        if outputs is not None and not outputs.done():
            outputs.cancel()
            outputs.add_done_callback(lambda f: f.cancelled() or f.exception())
        let_go()


def _write_all(pipe, data: bytes) -> None:
    pipe.write(data)
    pipe.flush()


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
        if container != "compute":
            # Only the compute container is modelled; the others have no libvirt, virsh or
            # virt-freezer, so a plugin that picked one would fail there too.
            raise errors.ApiError(500, "InternalError",
                                  f"the simulator runs only the compute container, not {container}")
        return await run_in_container(sandbox.command(command), io)

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
