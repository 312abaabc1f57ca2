"""What the API server asks of the cluster behind it, and a trivial in-memory backend.

The real backend (real VMs, exec sandboxes, virt-launcher behaviour) implements the same
`Backend` protocol; the server only routes, authorizes and speaks the wire protocols.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

from . import errors
from .store import Store


class ExecIO(Protocol):
    """The streams of one `pods/exec` call, as the backend sees them."""

    stdin: bool      # the client asked for stdin (otherwise read_stdin() is b"" at once)
    tty: bool

    async def read_stdin(self) -> bytes:
        """The next chunk of stdin; b"" at EOF (client closed stdin, never opened it, or left)."""

    async def write_stdout(self, data: bytes) -> None: ...

    async def write_stderr(self, data: bytes) -> None: ...


class Backend(Protocol):
    async def exec(self, pod: dict, container: str, command: list[str], io: ExecIO) -> int:
        """Run `command` in `container` of `pod` and return its exit code. Raise ApiError
        for a failure to start (sent to the client as the channel-3 Status)."""

    async def freeze(self, vmi: dict, unfreeze_timeout_s: float) -> None:
        """Freeze the guest's filesystems (the route checked the phase and cut the timeout to
        int32 seconds). Raise ApiError(500, "InternalError", ...) as virt-api would; return for
        200 OK."""

    async def unfreeze(self, vmi: dict) -> None: ...

    async def guestosinfo(self, vmi: dict) -> dict: ...


ExecCommand = Callable[[list[str], ExecIO], Awaitable[int]]


def vmi_conflict(vmi: dict, why: str) -> errors.ApiError:
    """virt-api's 409: `errors.NewConflict(v1.Resource("virtualmachineinstance"), name, ...)`."""
    return errors.conflict("kubevirt.io", "virtualmachineinstance", vmi["metadata"]["name"], why)


async def _echo(args: list[str], io: ExecIO) -> int:
    await io.write_stdout((" ".join(args) + "\n").encode())
    return 0


async def _cat(args: list[str], io: ExecIO) -> int:
    while chunk := await io.read_stdin():
        await io.write_stdout(chunk)
    return 0


async def _seq(args: list[str], io: ExecIO) -> int:
    await io.write_stdout("".join(f"{n}\n" for n in range(1, int(args[-1]) + 1)).encode())
    return 0


async def _true(args: list[str], io: ExecIO) -> int:
    return 0


async def _false(args: list[str], io: ExecIO) -> int:
    return 1


@dataclass
class InMemoryBackend:
    """Exec runs a few built-in commands (echo, cat, seq, true, false, and `sh -c` with
    `;`-separated statements, `exit N` and `>&2`); freeze/unfreeze flip
    `status.fsFreezeStatus` in the store. Every call is recorded in `calls`."""

    store: Store
    commands: dict[str, ExecCommand] = field(default_factory=lambda: {
        "echo": _echo, "cat": _cat, "seq": _seq, "true": _true, "false": _false})
    calls: list[tuple] = field(default_factory=list)

    async def exec(self, pod: dict, container: str, command: list[str], io: ExecIO) -> int:
        self.calls.append(("exec", pod["metadata"]["name"], container, list(command)))
        if command[:2] == ["sh", "-c"] and len(command) > 2:
            return await self._script(command[2], io)
        return await self._run(list(command), io)

    async def _script(self, script: str, io: ExecIO) -> int:
        code = 0
        for statement in script.split(";"):
            words = shlex.split(statement)
            if not words:
                continue
            if words[0] == "exit":
                return int(words[1]) if len(words) > 1 else code
            code = await self._run(words, io)
        return code

    async def _run(self, words: list[str], io: ExecIO) -> int:
        if words and words[-1] == ">&2":
            words = words[:-1]
            io = _StderrIO(io)
        handler = self.commands.get(words[0]) if words else None
        if handler is None:
            await io.write_stderr(f"sh: {words[0] if words else ''}: not found\n".encode())
            return 127
        return await handler(words[1:], io)

    async def freeze(self, vmi: dict, unfreeze_timeout_s: float) -> None:
        self.calls.append(("freeze", vmi["metadata"]["name"], unfreeze_timeout_s))
        self._set_freeze_status(vmi, "frozen")

    async def unfreeze(self, vmi: dict) -> None:
        self.calls.append(("unfreeze", vmi["metadata"]["name"]))
        self._set_freeze_status(vmi, None)

    async def guestosinfo(self, vmi: dict) -> dict:
        self.calls.append(("guestosinfo", vmi["metadata"]["name"]))
        conditions = (vmi.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "AgentConnected" for c in conditions):
            raise vmi_conflict(vmi, "VMI does not have guest agent connected")
        return vmi["status"].get("guestOSInfo") or {}

    def _set_freeze_status(self, vmi: dict, value: str | None) -> None:
        if (vmi.get("status") or {}).get("phase") != "Running":
            raise vmi_conflict(vmi, "VMI is not running")

        def apply(obj: dict) -> None:
            status = obj.setdefault("status", {})
            if value:
                status["fsFreezeStatus"] = value
            else:
                status.pop("fsFreezeStatus", None)
        meta = vmi["metadata"]
        self.store.mutate("virtualmachineinstances", meta["namespace"], meta["name"], apply)


@dataclass
class _StderrIO:
    """`cmd >&2`: the command's stdout goes to stderr."""

    inner: ExecIO

    @property
    def stdin(self) -> bool:
        return self.inner.stdin

    @property
    def tty(self) -> bool:
        return self.inner.tty

    async def read_stdin(self) -> bytes:
        return await self.inner.read_stdin()

    async def write_stdout(self, data: bytes) -> None:
        await self.inner.write_stderr(data)

    async def write_stderr(self, data: bytes) -> None:
        await self.inner.write_stderr(data)
